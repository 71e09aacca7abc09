"""``ifd``: Superfiltering / Cherry LLM instruction-following difficulty (Li et al. 2024).

IFD = P(A | Q) / P(A). An IFD of 1 or more means the instruction does not help the model predict
the answer (the pair is likely misaligned), so such examples are dropped first; of the rest the
highest IFD comes first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxysel.options import option
from proxysel.selectors.base import (
    ON_SHORT,
    ON_SHORT_HELP,
    RankingParams,
    RankingSelector,
    ScoreTable,
    format_value,
)
from proxysel.selectors.registry import register_selector


@dataclass(frozen=True)
class IFDParams(RankingParams):
    signal: str = option("ifd", "ifd: the perplexity ratio (ifd, Superfiltering) or the loss ratio "
                                "(ifd_loss, Cherry LLM)", choices=("ifd", "ifd_loss"))
    on_short: str = option("error", ON_SHORT_HELP, choices=ON_SHORT)


@register_selector("ifd")
class IFDSelector(RankingSelector):
    """Drop IFD >= 1, then keep the highest IFD first.

    signal:   ``ifd`` (perplexity ratio, Superfiltering) or ``ifd_loss`` (loss ratio, Cherry LLM);
              both are >= 1 exactly when the instruction does not lower the answer's loss.
    on_short: when fewer than ``budget`` examples have IFD < 1: "error" (default) raises and says
              how many are left; "keep" keeps all of them (fewer than the budget, with a note).
    Plus the shared options of ``RankingSelector``.

    >>> from proxysel.selectors.base import ScoreTable
    >>> t = ScoreTable(ids=list("abcd"), columns={"ifd": np.array([0.5, 1.2, 0.9, 0.7])})
    >>> IFDSelector().select(t, 2).selected_ids
    ['c', 'd']
    """

    Params = IFDParams

    def _filter(self, table: ScoreTable, candidates: np.ndarray, reason: list[str]) -> np.ndarray:
        values = table.column(self.signal)
        high = candidates & (values >= 1.0)
        for i in np.flatnonzero(high):
            reason[i] = f"{self.signal}={format_value(values[i])} >= 1, dropped"
        self._n_high = int(high.sum())
        return candidates & ~high

    def _budget(self, budget, table, n_candidates, why=""):
        return super()._budget(budget, table, n_candidates,
                               why=f"; {self._n_high} dropped with {self.signal} >= 1")

    def _order(self, values: np.ndarray | None, m: int, rng: np.random.Generator) -> np.ndarray:
        return np.argsort(-values, kind="stable")
