"""Paired verdicts over the seeds of several bench folders that share one pool and one eval set.

`proxysel bench` compares a selector with a baseline over the seeds of one folder. When more
seeds were run later into another folder (a confirmation run, e.g. seeds 3-5 beside 0-2), this
pools them: it reads every cell's ``cells/<cell>/result.json`` and runs the bench's own
``analysis.comparisons`` over all of them, grouped by the eval set's ``family`` field (one group
when the eval records have no such field). With one folder it compares against any baseline, such
as ``longest``. Each comparison gets two intervals: the bench's bootstrap over eval examples, and
Student's t over the per-seed deltas (``stats.seed_interval``), which covers the training seed's
spread.

    python benchmarks/pooled_seeds.py runs/bench-skewed runs/bench-skewed-confirm \
        --budgets 0.1 0.3 --selectors mid-clean-rds rds mid-clean-s2l mid-s2l --baselines random longest full
    python benchmarks/pooled_seeds.py runs/bench-cpu-targeted --metric eval_loss --budgets 0.3 \
        --selectors rds50-longest rds --baselines longest random
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from proxysel.benchmarking.analysis import comparisons


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="bench folders with the same pool and eval set")
    ap.add_argument("--budgets", nargs="+", type=float, required=True)
    ap.add_argument("--selectors", nargs="+", required=True)
    ap.add_argument("--baselines", nargs="+", default=["random"])
    ap.add_argument("--group-field", default="family")
    ap.add_argument("--metric", choices=["exact_match", "eval_loss"], default="exact_match",
                    help="exact_match: macro exact match, in points; eval_loss: macro held-out loss, nats")
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()

    evals = [(f / "data" / "eval.jsonl").read_bytes() for f in args.folders]
    if any(e != evals[0] for e in evals):
        raise SystemExit("the folders have different eval sets: their cells cannot be paired")
    records = [json.loads(line) for line in evals[0].decode().splitlines() if line.strip()]
    rows: dict[str, dict] = {}
    for folder in args.folders:
        for path in (folder / "cells").glob("*/result.json"):
            if path.parent.name == "base":  # the untrained target: the same in every folder
                continue
            if path.parent.name in rows:
                raise SystemExit(f"cell {path.parent.name} is in two folders")
            rows[path.parent.name] = json.loads(path.read_text())
    groups = [str(r.get(args.group_field, "all")) for r in records]
    ids = [r["id"] for r in records]
    found = comparisons(list(rows.values()), groups, ids, metric=args.metric, n_boot=args.n_boot,
                        baselines=args.baselines)
    by_key = {(c["selector"], c["budget"], c["baseline"]): c for c in found}
    scale, digits, unit = (100, 1, "points") if args.metric == "exact_match" else (1, 4, "nats")

    seeds = sorted({r["seed"] for r in rows.values()})
    print(f"seeds {seeds}; macro {args.metric.replace('_', ' ')}, {unit}; paired bootstrap 95% over eval "
          f"examples by {args.group_field}; over seeds: Student's t 95% of the per-seed deltas\n")
    print("| selector | budget | mean | vs | Δ mean ± std | wins | interval | verdict | over seeds "
          "| verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for budget in args.budgets:
        for selector in args.selectors:
            mean = scale * np.mean([r["metrics"][f"{args.metric}_macro"] for r in rows.values()
                                    if (r["selector"], r["budget"]) == (selector, budget)])
            for base in args.baselines:
                c = by_key.get((selector, budget, base))
                if c is None or "error" in c:
                    raise SystemExit(f"{selector} at {budget:g} against {base}: "
                                     f"{'no cells to pair' if c is None else c['error']}")
                lo, hi, d, sd = (scale * c[k] for k in ("lo", "hi", "mean", "std"))
                interval = f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"
                over_seeds = ("– | –" if c["seed_verdict"] is None else
                              f"[{scale * c['seed_lo']:+.{digits}f}, {scale * c['seed_hi']:+.{digits}f}] | "
                              f"{c['seed_verdict']}")
                if c["seeds_needed"]:
                    over_seeds += f" (~{c['seeds_needed']} seeds to resolve)"
                print(f"| {selector} | {budget:g} | {mean:.{digits}f} | {base} | {d:+.{digits}f} ± "
                      f"{sd:.{digits}f} | {c['wins']} of {c['n_seeds']} | {interval} | {c['verdict']} | "
                      f"{over_seeds} |")


if __name__ == "__main__":
    main()
