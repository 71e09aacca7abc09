"""What did each selector keep? A profile of a bench's subsets against the pool and the held-out set.

For a real pool, with no planted families or noise, this is the "why" behind a table row: the
mean response length, the proxy's perplexities and LP_app of the kept examples, and the shares
of non-English and code answers, next to the same figures for the whole pool and the held-out
set (the held-out loss rewards a subset that looks like the held-out set).

    python benchmarks/subset_profile.py runs/bench-cpu --budget 0.3

Prints a markdown table (mean over the seeds of each selector).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def _answer(rec: dict) -> str:
    if "output" in rec:
        return str(rec["output"])
    turns = rec.get("messages") or rec.get("conversations") or []
    texts = [t.get("content", t.get("value", "")) for t in turns
             if t.get("role", t.get("from")) in ("assistant", "gpt")]
    return str(texts[-1]) if texts else ""


def _features(records: list[dict]) -> dict[str, np.ndarray]:
    answers = [_answer(r) for r in records]
    non_ascii = np.array([sum(ord(c) > 127 for c in a) / max(len(a), 1) for a in answers])
    return {"answer_chars": np.array([len(a) for a in answers], dtype=float),
            "non_english": (non_ascii > 0.2).astype(float),
            "code": np.array(["```" in a or "def " in a or "{" in a for a in answers], dtype=float)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path)
    ap.add_argument("--budget", type=float, default=0.3)
    args = ap.parse_args(argv)

    pool = [json.loads(x) for x in (args.bench / "data" / "pool.jsonl").read_text().splitlines()]
    held = [json.loads(x) for x in (args.bench / "data" / "eval.jsonl").read_text().splitlines()]
    ids = [str(r.get("id")) for r in pool]
    feats = _features(pool)
    scores = pq.read_table(args.bench / "proxy" / "scores.parquet").to_pydict()
    pos = {i: k for k, i in enumerate(scores["id"])}
    order = [pos[i] for i in ids]
    for col in ("n_response_tokens", "ppl_0", "ppl_1", "lp_app"):
        feats[col] = np.array([scores[col][k] for k in order], dtype=float)
    cols = ["answer_chars", "n_response_tokens", "ppl_0", "ppl_1", "lp_app", "non_english", "code"]

    def row(name: str, masks: list[np.ndarray]) -> str:
        # perplexities are heavy-tailed (a few examples at 10^3-10^4): their median, the rest's mean
        vals = [np.mean([(np.nanmedian if c.startswith("ppl") else np.nanmean)(feats[c][m]) for m in masks])
                for c in cols]
        return f"| {name} | " + " | ".join(f"{100 * v:.0f}%" if c in ("non_english", "code") else
                                          f"{v:.3f}" if c == "lp_app" else f"{v:.1f}"
                                          for c, v in zip(cols, vals)) + " |"

    lines = ["| subset | " + " | ".join(f"median {c}" if c.startswith("ppl") else c for c in cols) + " |",
             "|---|" + "---|" * len(cols),
             row("pool", [np.ones(len(pool), dtype=bool)])]
    by_selector: dict[str, list[np.ndarray]] = {}
    for d in sorted((args.bench / "proxy" / "selections").iterdir()):
        name, budget, _seed = d.name.rsplit("-", 2)
        if float(budget) != args.budget:
            continue
        t = pq.read_table(d / "selection.parquet", columns=["id", "selected"]).to_pydict()
        chosen = {i for i, s in zip(t["id"], t["selected"]) if s}
        by_selector.setdefault(name, []).append(np.array([i in chosen for i in ids]))
    for name, masks in by_selector.items():
        lines.append(row(f"{name} @ {args.budget:g} ({len(masks)} seeds)", masks))
    hf = _features(held)
    lines.append("| held-out set | " + " | ".join(
        f"{100 * np.mean(hf[c]):.0f}%" if c in ("non_english", "code") else
        f"{np.mean(hf[c]):.1f}" if c in hf else "–" for c in cols) + " |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
