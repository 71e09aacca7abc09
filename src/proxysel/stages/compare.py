"""``proxysel compare``: does a small proxy rank like a bigger one? Two runs' signals side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from proxysel.errors import UsageError
from proxysel.store import RunFolder

__all__ = ["compare_runs", "format_compare", "topk_overlap"]


def topk_overlap(a: np.ndarray, b: np.ndarray, fraction: float, order: str) -> float:
    """|top_a ∩ top_b| / k for the k = round(fraction * n) first examples of each ranking."""
    n = len(a)
    k = max(1, int(round(fraction * n)))
    sign = 1.0 if order == "low" else -1.0
    ta = set(np.argsort(sign * a, kind="stable")[:k].tolist())
    tb = set(np.argsort(sign * b, kind="stable")[:k].tolist())
    return len(ta & tb) / k


def _signal(run: str | Path, column: str) -> dict[str, float]:
    folder = RunFolder(run)
    table = folder.read_scores()
    if table is None:
        raise UsageError(f"{run}: no scores.parquet")
    if column not in table.column_names:
        raise UsageError(f"{folder.scores_path}: no column '{column}' "
                         f"(columns: {', '.join(table.column_names)})")
    return dict(zip(table.column("id").to_pylist(), table.column(column).to_pylist()))


def compare_runs(run_a: str | Path, run_b: str | Path, *, signal: str = "loss", signal_b: str | None = None,
                 order: str = "low", fractions: Sequence[float] = (0.01, 0.05, 0.1, 0.3)) -> dict[str, Any]:
    """Spearman and Kendall of ``signal`` between two runs over the ids they share (finite in both),
    and the overlap of their top fractions (``order`` low: lowest first, as for loss/LP; high for
    ask_llm/ifd)."""
    from scipy.stats import kendalltau, spearmanr

    if order not in ("low", "high"):
        raise UsageError(f"--order must be low or high, got {order!r}")
    sa, sb = _signal(run_a, signal), _signal(run_b, signal_b or signal)
    ids = [i for i in sa if i in sb and sa[i] is not None and sb[i] is not None
           and np.isfinite(sa[i]) and np.isfinite(sb[i])]
    if len(ids) < 3:
        raise UsageError(f"only {len(ids)} shared examples with finite {signal}: nothing to compare")
    a = np.asarray([sa[i] for i in ids], dtype=np.float64)
    b = np.asarray([sb[i] for i in ids], dtype=np.float64)
    return {"n": len(ids), "signal": signal, "signal_b": signal_b or signal, "order": order,
            "spearman": float(spearmanr(a, b).statistic), "kendall": float(kendalltau(a, b).statistic),
            "overlap": {f: topk_overlap(a, b, f, order) for f in fractions}}


def format_compare(res: dict[str, Any]) -> str:
    lines = [f"{res['signal']} vs {res['signal_b']} over {res['n']} shared examples ({res['order']} first)",
             f"  Spearman {res['spearman']:+.4f}   Kendall {res['kendall']:+.4f}",
             "  overlap of the selections:"]
    lines += [f"    top {100 * f:g}%: {v:.1%} (random: {f:.0%})" for f, v in res["overlap"].items()]
    return "\n".join(lines)
