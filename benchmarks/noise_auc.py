"""How well does the proxy's perplexity tell planted noise from correct records, epoch by epoch?

On a generated pool with noise labels (the `skewed` or `synthetic` preset's pool.jsonl: a `noise`
field of clean, near_duplicate, duplicate, wrong or garbage), for every epoch i of the proxy's run
(`ppl_epoch`, P_0..P_n from train-proxy) this prints the AUC of log P_i for one kind of noise
against the correct records: the probability that a noisy record has the higher perplexity. The
AUC is taken within k-means clusters of the run's embeddings, over the pairs of a noisy and a
correct record in one cluster, because the recipes cut per cluster (`within_clusters`): a filter
sees only the order inside a cluster. It also prints the AUC of the mean log perplexity over
epochs 1..i (the "confidence" of dataset cartography, Swayamdipta et al. 2020).

    python benchmarks/noise_auc.py runs/bench-skewed-matched/proxy runs/bench-skewed-matched/data/pool.jsonl
    python benchmarks/noise_auc.py runs/proxy-e20 POOL --embeddings runs/bench-skewed-matched/proxy
    python benchmarks/noise_auc.py runs/proxy-e20 POOL --embeddings ... --per family

``--per FIELD`` adds the last epoch's AUC within each value of a record field (the family: where
the perplexity tells the noise apart and where it does not).

``--bias FIELD`` (e.g. ``difficulty``) adds, per epoch, how much the perplexity prefers the easy
records among the *clean* ones: for every level L above the lowest, the AUC of a clean record of
level L against one of the lowest level, within the same ``--bias-within`` group (default
``family``): the column "difficulty 3" is that AUC for level 3 over level 1. 0.5 is no preference;
above 0.5, a filter that cuts the highest perplexity cuts the harder records too.

    python benchmarks/noise_auc.py runs/proxy-e40 POOL --embeddings ... --per family --bias difficulty

``--score COLUMN=RUN[,RUN...]`` (repeatable) adds the same figures for any column of other runs'
scores.parquet, joined by id (a record no run scores is left out): `mink`, or the `loss` of
proxies trained on one half of the pool and scored on the other (out-of-fold), one run per half:

    python benchmarks/noise_auc.py RUN POOL --per family --score loss=runs/oof-a,runs/oof-b

Needs the run's scores.parquet (ppl_epoch) and embeddings.parquet (or --embeddings RUN).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

CORRECT = ("clean", "near_duplicate", "duplicate")


def within_auc(score: np.ndarray, positive: np.ndarray, negative: np.ndarray, groups: np.ndarray) -> float:
    """P(score of a positive > score of a negative) over the (positive, negative) pairs that share a
    group, ties counted half; NaN when no group holds both.

    score: float (n,); positive, negative: bool (n,), disjoint; groups: (n,) labels."""
    from scipy.stats import rankdata

    wins = pairs = 0.0
    for g in np.unique(groups):
        pos, neg = score[positive & (groups == g)], score[negative & (groups == g)]
        if len(pos) == 0 or len(neg) == 0:
            continue
        ranks = rankdata(np.concatenate([pos, neg]))  # average ranks: a tie counts one half
        wins += ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
        pairs += len(pos) * len(neg)
    return wins / pairs if pairs else float("nan")


def level_bias(score: np.ndarray, level: np.ndarray, clean: np.ndarray, within: np.ndarray
               ) -> dict[str, float]:
    """For every level above the lowest, ``within_auc`` of the clean records of that level against the
    clean records of the lowest level, pairs taken within ``within``: how much a higher ``score`` goes
    with a higher level (0.5: not at all). Levels sort as numbers written in digits do (``"2" < "10"``).

    score: float (n,); level, within: (n,) labels (str); clean: bool (n,)."""
    levels = sorted(set(level[clean]), key=lambda v: (len(v), v))
    low = clean & (level == levels[0])
    return {v: within_auc(score, clean & (level == v), low, within) for v in levels[1:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="the proxy's run folder (scores.parquet with ppl_epoch)")
    ap.add_argument("pool", type=Path, help="the pool .jsonl with a noise field")
    ap.add_argument("--embeddings", type=Path, help="run folder whose embeddings.parquet to cluster "
                    "(default: RUN)")
    ap.add_argument("--noise", default="wrong", help="the positive class (default wrong)")
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per", metavar="FIELD", help="also the last epoch's AUC within each value of this "
                    "record field (e.g. family)")
    ap.add_argument("--bias", metavar="FIELD", help="also, per epoch, the AUC of clean records of each "
                    "higher level of this field (e.g. difficulty) against the lowest level")
    ap.add_argument("--bias-within", metavar="FIELD", default="family",
                    help="the record field within whose values --bias pairs records (default family)")
    ap.add_argument("--score", action="append", default=[], metavar="COLUMN=RUN[,RUN...]",
                    help="also the AUC of this scores.parquet column of these runs, joined by id")
    args = ap.parse_args(argv)
    from proxysel.cluster import kmeans

    records = {}
    for line in args.pool.read_text().splitlines():
        rec = json.loads(line)
        records[str(rec["id"])] = rec
    scores = pq.read_table(args.run / "scores.parquet", columns=["id", "ppl_epoch"]).to_pydict()
    emb = pq.read_table((args.embeddings or args.run) / "embeddings.parquet").to_pydict()
    vectors = dict(zip(emb["id"], emb["embedding"]))
    ids = scores["id"]
    labels = np.array([records[i]["noise"] for i in ids])
    groups = kmeans(np.array([vectors[i] for i in ids], dtype=np.float32), args.clusters, seed=args.seed)
    log_ppl = np.log(np.array(scores["ppl_epoch"], dtype=float))  # (n, epochs + 1): P_0..P_n
    positive, negative = labels == args.noise, np.isin(labels, CORRECT)
    print(f"{args.run}: {positive.sum()} {args.noise} against {negative.sum()} correct records, "
          f"within {args.clusters} clusters")
    def field_values(name: str) -> np.ndarray:
        return np.array([str(records[i].get(name)) for i in ids])

    level = field_values(args.bias) if args.bias else None
    within = field_values(args.bias_within) if args.bias else None
    per = field_values(args.per) if args.per else None

    def bias(score: np.ndarray) -> dict[str, float]:
        return level_bias(score, level, labels == "clean", within) if args.bias else {}

    bias_cols = [f"{args.bias} {v}" for v in bias(log_ppl[:, -1])]
    print("| epoch | AUC of log P_i | AUC of mean log P_1..P_i |" + "".join(f" {c} |" for c in bias_cols))
    print("|---|---|---|" + "---|" * len(bias_cols))
    for i in range(log_ppl.shape[1]):
        mean = log_ppl[:, 1:i + 1].mean(axis=1) if i else log_ppl[:, 0]
        print(f"| {i} | {within_auc(log_ppl[:, i], positive, negative, groups):.3f} "
              f"| {within_auc(mean, positive, negative, groups):.3f} |"
              + "".join(f" {b:.2f} |" for b in bias(log_ppl[:, i]).values()))
    if per is not None:
        print(f"\n| {args.per} | {args.noise} | correct | AUC of log P_{log_ppl.shape[1] - 1} |")
        print("|---|---|---|---|")
        for value in np.unique(per[positive]):
            pos, neg = positive & (per == value), negative & (per == value)
            print(f"| {value} | {pos.sum()} | {neg.sum()} | "
                  f"{within_auc(log_ppl[:, -1], pos, neg, per):.3f} |")
    if args.score:
        values = list(np.unique(per[positive])) if per is not None else []
        head = [*values, *bias_cols]
        print("\n| score | AUC |" + "".join(f" {c} |" for c in head))
        print("|---|---|" + "---|" * len(head))
        for spec in args.score:
            column, _, runs = spec.partition("=")
            score = joined_column(column, [Path(r) for r in runs.split(",")], ids)
            known = ~np.isnan(score)
            cells = [within_auc(score, positive & known, negative & known, groups)]
            cells += [within_auc(score, positive & known & (per == v), negative & known & (per == v), per)
                      for v in values]
            print(f"| {spec} | " + " | ".join(f"{c:.2f}" for c in cells) + " |"
                  + "".join(f" {b:.2f} |" for b in bias(np.where(known, score, np.nan)).values()))
    return 0


def joined_column(column: str, runs: list[Path], ids: list[str]) -> np.ndarray:
    """``column`` of the runs' scores.parquet, in the order of ``ids`` (float64, NaN where no run scores
    the id; a later run's value wins)."""
    value: dict[str, float] = {}
    for run in runs:
        names = pq.read_schema(run / "scores.parquet").names
        if column not in names:
            raise SystemExit(f"--score: {run}/scores.parquet has no column {column!r} "
                             f"(it has {', '.join(names)})")
        table = pq.read_table(run / "scores.parquet", columns=["id", column]).to_pydict()
        value.update(zip(table["id"], table[column]))
    return np.array([np.nan if value.get(i) is None else float(value[i]) for i in ids])


if __name__ == "__main__":
    sys.exit(main())
