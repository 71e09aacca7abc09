"""``top``: rank by any signal, keep the lowest, the highest or the band around the median.

The perplexity baselines of the LP, S2L and Ask-LLM papers are ``top`` on ``ppl``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxysel.options import option
from proxysel.selectors.base import RankingParams, RankingSelector
from proxysel.selectors.registry import register_selector

ORDERS = ("low", "high", "middle")


def order_by(values: np.ndarray, order: str) -> np.ndarray:
    """Positions of ``values`` in preference order; ties keep their original order.

    low: ascending. high: descending. middle: outward from the median, so the first b positions
    are the b sorted values centred on the median (``sorted[(m - b) // 2 : (m - b) // 2 + b]``).

    >>> order_by(np.array([5.0, 1.0, 4.0, 2.0, 3.0]), "middle").tolist()
    [4, 3, 2, 1, 0]
    """
    if order == "low":
        return np.argsort(values, kind="stable")
    if order == "high":
        return np.argsort(-values, kind="stable")
    ascending = np.argsort(values, kind="stable")
    m = len(values)
    # Distance from the centre in sorted position; ties (one on each side) go to the lower side.
    centre_distance = np.abs(2 * np.arange(m) - (m - 1))
    return ascending[np.argsort(centre_distance, kind="stable")]


@dataclass(frozen=True)
class TopParams(RankingParams):
    signal: str = option("ppl", "top: the score column to rank by (ppl: the P_0 perplexity baseline)",
                         nonempty=True)
    order: str = option("low", "top: low, high, or middle (the band centred on the median)", choices=ORDERS)


@register_selector("top")
class TopSelector(RankingSelector):
    """Keep the candidates with the lowest, highest or middle values of one signal.

    signal: the column to rank by (default ``ppl``, the P_0 perplexity baseline).
    order:  "low" | "high" | "middle" (the band centred on the median).
    Plus the shared options of ``RankingSelector`` (within_clusters, clusters, rounding, ...).

    >>> from proxysel.selectors.base import ScoreTable
    >>> t = ScoreTable(ids=list("abcde"), columns={"ppl": np.array([5.0, 1.0, 4.0, 2.0, 3.0])})
    >>> TopSelector(order="middle").select(t, 3).selected_ids
    ['c', 'd', 'e']
    """

    Params = TopParams

    def _order(self, values: np.ndarray | None, m: int, rng: np.random.Generator) -> np.ndarray:
        return order_by(values, self.order)
