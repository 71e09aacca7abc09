"""Paired verdicts over the seeds of several bench folders that share one pool and one eval set.

`proxysel bench` compares a selector with a baseline over the seeds of one folder. When more
seeds were run later into another folder (a confirmation run, e.g. seeds 3-5 beside 0-2), this
pools them: it reads every cell's per-example exact match (``cells/<cell>/result.json``) and calls
``benchmarking.stats.paired_comparison`` on the (n_seeds, n_eval) matrices, grouped by the eval
set's ``family`` field, as the bench's own verdict table does.

    python benchmarks/pooled_seeds.py runs/bench-skewed runs/bench-skewed-confirm \
        --budgets 0.1 0.3 --selectors mid-clean-rds rds mid-clean-s2l mid-s2l --baselines random longest full
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from proxysel.benchmarking.stats import macro_mean, paired_comparison


def cells(folder: Path) -> dict[str, dict]:
    """cell name -> its result.json, for every finished cell of a bench folder."""
    return {p.parent.name: json.loads(p.read_text()) for p in (folder / "cells").glob("*/result.json")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="bench folders with the same pool and eval set")
    ap.add_argument("--budgets", nargs="+", type=float, required=True)
    ap.add_argument("--selectors", nargs="+", required=True)
    ap.add_argument("--baselines", nargs="+", default=["random"])
    ap.add_argument("--group-field", default="family")
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()

    evals = [(f / "data" / "eval.jsonl").read_bytes() for f in args.folders]
    if any(e != evals[0] for e in evals):
        raise SystemExit("the folders have different eval sets: their cells cannot be paired")
    records = [json.loads(line) for line in evals[0].decode().splitlines() if line.strip()]
    ids, groups = [r["id"] for r in records], np.array([r[args.group_field] for r in records])
    by_seed: dict[int, dict[str, dict]] = {}
    for folder in args.folders:
        for name, r in cells(folder).items():
            if name == "base":  # the untrained target: the same in every folder
                continue
            if by_seed.setdefault(r["seed"], {}).setdefault(name, r) is not r:
                raise SystemExit(f"seed {r['seed']}: cell {name} is in two folders")
    seeds = sorted(by_seed)

    def exact(selector: str, budget: float) -> np.ndarray:
        rows = []
        for s in seeds:
            name = f"full-s{s}" if selector == "full" else f"{selector}-{budget:g}-s{s}"
            r = by_seed[s].get(name)
            if r is None:
                raise SystemExit(f"no cell {name} in {[str(f) for f in args.folders]}")
            if r["per_example"]["id"] != ids:
                raise SystemExit(f"cell {name} was evaluated on other examples")
            rows.append(np.asarray(r["per_example"]["exact"], dtype=float))
        return np.stack(rows)

    print(f"seeds {seeds}; macro exact match, points; paired bootstrap 95% over eval examples by "
          f"{args.group_field}\n")
    print("| selector | budget | mean | vs | Δ mean ± std | wins | interval | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    for budget in args.budgets:
        for selector in args.selectors:
            x = exact(selector, budget)
            mean = 100 * np.mean([macro_mean(row, groups) for row in x])
            for base in args.baselines:
                c = paired_comparison(x, exact(base, budget), groups, higher_is_better=True,
                                      n_boot=args.n_boot)
                interval = f"[{100 * c.lo:+.1f}, {100 * c.hi:+.1f}]"
                print(f"| {selector} | {budget:g} | {mean:.1f} | {base} | {100 * c.mean:+.1f} ± "
                      f"{100 * c.std:.1f} | {c.wins} of {c.n_seeds} | {interval} | {c.verdict} |")


if __name__ == "__main__":
    main()
