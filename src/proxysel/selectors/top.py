"""``top``: rank by any signal, keep the lowest, the highest or the band around the median.

The perplexity baselines of the LP, S2L and Ask-LLM papers are ``top`` on ``ppl``. With ``at_least``
or ``at_most`` it is first a threshold filter, as a data pipeline's quality rules are (Bicleaner's
score threshold, Superfiltering's IFD < 1): candidates outside the range are dropped whatever the
budget, and ``on_short: keep`` keeps all that pass when they are fewer than the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxysel.options import FieldError, option
from proxysel.selectors.base import (
    ON_SHORT,
    ON_SHORT_HELP,
    RankingParams,
    RankingSelector,
    ScoreTable,
    format_value,
)
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
    at_least: float | None = option(None, "top: drop candidates whose signal is below this value, whatever "
                                          "the budget (a threshold filter)")
    at_most: float | None = option(None, "top: drop candidates whose signal is above this value, whatever "
                                         "the budget")
    on_short: str = option("error", ON_SHORT_HELP, choices=ON_SHORT)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise FieldError("at_least", f"(={self.at_least}) is above at_most (={self.at_most}): nothing "
                                         "would pass")


@register_selector("top")
class TopSelector(RankingSelector):
    """Keep the candidates with the lowest, highest or middle values of one signal.

    signal:   the column to rank by (default ``ppl``, the P_0 perplexity baseline).
    order:    "low" | "high" | "middle" (the band centred on the median).
    at_least, at_most: drop the candidates outside [at_least, at_most] first (either bound optional),
              each with its value as the reason.
    on_short: when fewer than ``budget`` candidates pass: "error" (default) raises and says how many
              are left; "keep" keeps all of them.
    Plus the shared options of ``RankingSelector`` (within_clusters, clusters, rounding, ...).

    >>> from proxysel.selectors.base import ScoreTable
    >>> t = ScoreTable(ids=list("abcde"), columns={"ppl": np.array([5.0, 1.0, 4.0, 2.0, 3.0])})
    >>> TopSelector(order="middle").select(t, 3).selected_ids
    ['c', 'd', 'e']
    >>> TopSelector(order="high", at_most=4.0, on_short="keep").select(t, 5).selected_ids
    ['b', 'c', 'd', 'e']
    """

    Params = TopParams

    def _filter(self, table: ScoreTable, candidates: np.ndarray, reason: list[str]) -> np.ndarray:
        if self.at_least is None and self.at_most is None:
            return candidates
        values = table.column(self.signal)
        out = np.zeros(len(candidates), dtype=bool)
        if self.at_least is not None:
            out |= candidates & (values < self.at_least)
        if self.at_most is not None:
            out |= candidates & (values > self.at_most)
        bounds = " and ".join(f"{name} {v}" for name, v in (("at_least", self.at_least),
                                                            ("at_most", self.at_most)) if v is not None)
        for i in np.flatnonzero(out):
            reason[i] = f"{self.signal}={format_value(values[i])} outside {bounds}, dropped"
        self._n_out = int(out.sum())
        return candidates & ~out

    def _budget(self, budget, table, n_candidates, why=""):
        if self.at_least is None and self.at_most is None:
            return super()._budget(budget, table, n_candidates, why)
        return super()._budget(budget, table, n_candidates,
                               why=f"; {self._n_out} dropped outside the {self.signal} threshold")

    def _order(self, values: np.ndarray | None, m: int, rng: np.random.Generator) -> np.ndarray:
        return order_by(values, self.order)
