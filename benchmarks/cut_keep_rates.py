"""What a per-family noise cut keeps, by the planted labels, for several signals and cut budgets.

On a generated pool with noise labels (the `skewed` preset's pool.jsonl), this replays the skewed
recipes' filter chain with the labels' families as the groups: a band over the whole pool
(`--band COLUMN:ORDER:BUDGET`, default the garbage band `ppl_5:low:0.95`), then within each family
the same share of what the band kept, ranked by each `--cut COLUMN:ORDER` (budgets are fractions
of the whole pool, as in a bench config). For every cut and budget it prints the share of the clean
records and of the wrong answers kept, and two biases among the clean records:

- `copy`: kept share of the originals that have an exact or paraphrased copy in the pool, against
  those without one (a proxy memorises a record it saw twice sooner);
- `wording`: the mean over families of the spread (max - min) of the kept share over the task's
  instruction templates (told apart by the instruction's first word, which differs between the
  three templates of every skewed family), over the templates with at least 5 clean records.

Columns are read from the run's scores.parquet (the bench stores `ppl_<e>`, `confidence`, ...).

    python benchmarks/cut_keep_rates.py runs/bench-skewed-conf-a/proxy \
        runs/bench-skewed-conf-a/data/pool.jsonl --cut ppl_40:low --cut confidence:high \
        --budgets 0.75 0.8 0.85 0.9
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def ranked_keep(score: np.ndarray, candidates: np.ndarray, k: int, order: str) -> np.ndarray:
    """The indices of the ``k`` best of ``candidates`` by ``score`` (``low``: smallest first)."""
    s = score[candidates] if order == "low" else -score[candidates]
    return candidates[np.argsort(s, kind="stable")[:k]]


def share(kept: np.ndarray, mask: np.ndarray) -> str:
    """The kept share of the records in ``mask``, or "-" when there are none."""
    return f"{kept[mask].mean():.2f}" if mask.any() else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="the proxy's run folder (scores.parquet)")
    ap.add_argument("pool", type=Path, help="the pool .jsonl with noise, family and dup_of fields")
    ap.add_argument("--band", default="ppl_5:low:0.95", help="COLUMN:ORDER:BUDGET over the whole pool")
    ap.add_argument("--cut", action="append", required=True, metavar="COLUMN:ORDER",
                    help="a signal of the per-family cut and its order (low or high keeps first)")
    ap.add_argument("--budgets", nargs="+", type=float, required=True,
                    help="the cut's budgets, fractions of the whole pool")
    args = ap.parse_args(argv)

    records = [json.loads(line) for line in args.pool.read_text().splitlines() if line.strip()]
    table = pq.read_table(args.run / "scores.parquet").to_pydict()
    row = {i: k for k, i in enumerate(table["id"])}
    order_of = [row[r["id"]] for r in records]

    def column(name: str) -> np.ndarray:
        if name not in table:
            raise SystemExit(f"{args.run / 'scores.parquet'} has no column {name!r}")
        return np.asarray([table[name][k] for k in order_of], dtype=np.float64)

    family = np.array([r["family"] for r in records])
    noise = np.array([r["noise"] for r in records])
    wording = np.array([r["instruction"].split()[0] if r["instruction"].split() else "" for r in records])
    copied = {r["dup_of"] for r in records if r.get("dup_of")}
    has_copy = np.array([r["id"] in copied for r in records])
    clean, wrong = noise == "clean", noise == "wrong"

    band_col, band_order, band_budget = args.band.split(":")
    band = ranked_keep(column(band_col), np.arange(len(records)), round(len(records) * float(band_budget)),
                       band_order)
    in_band = np.zeros(len(records), dtype=bool)
    in_band[band] = True
    print(f"band {args.band}: {in_band.sum()} of {len(records)} records; cut within the {len(set(family))} "
          "families, each keeping the same share of what the band kept\n")
    print("| cut | budget | clean kept | wrong kept | wrong in the kept set | copy: with / without "
          "| wording spread |")
    print("|---|---|---|---|---|---|---|")
    for cut in args.cut:
        name, order = cut.split(":")
        score = column(name)
        for budget in args.budgets:
            keep = np.zeros(len(records), dtype=bool)
            for f in np.unique(family):
                members = np.flatnonzero((family == f) & in_band)
                fraction = budget / float(band_budget)
                keep[ranked_keep(score, members, int(round(len(members) * fraction)), order)] = True
            spreads = []
            for f in np.unique(family[clean]):
                rates = [keep[clean & (family == f) & (wording == w)].mean()
                         for w in np.unique(wording[clean & (family == f)])
                         if (clean & (family == f) & (wording == w)).sum() >= 5]
                if len(rates) >= 2:
                    spreads.append(max(rates) - min(rates))
            spread = f"{np.mean(spreads):.2f}" if spreads else "-"
            print(f"| {name} {order} | {budget:g} | {keep[clean].mean():.3f} | {keep[wrong].mean():.3f} | "
                  f"{(keep & wrong).sum() / keep.sum():.3f} | {share(keep, clean & has_copy)} / "
                  f"{share(keep, clean & ~has_copy)} | {spread} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
