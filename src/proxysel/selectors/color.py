"""``color``: CoLoR-Filter (Brandfonbrener et al., NeurIPS 2024): keep the largest conditional loss
reductions ``color = loss_prior - loss_conditional`` (``proxysel.signals.color``).

With ``tau``, the paper's candidate set: the top k are taken from ``round(tau * k)`` candidates
drawn at random (seeded). The official code (davidbrandfonbrener/color-filter-olmo) scores the
first ``N`` sequences of a seeded shuffle of C4 (``olmo/data/iterable_dataset.py``), a random
candidate set, and ``scripts/select_index_np.py`` keeps the top ``k = int(N / tau)`` of them
(``np.argsort(scores)[-k:]``). Drawing ``tau * k`` candidates from the pool, then keeping their
top k, is that rule for a pool larger than the candidate set. Ties keep pool order here (the
official ``argsort`` is not stable).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from proxysel.options import option
from proxysel.selectors.base import RankingParams, RankingSelector
from proxysel.selectors.registry import register_selector
from proxysel.selectors.top import order_by


@dataclass(frozen=True)
class ColorParams(RankingParams):
    tau: float | None = option(None, "CoLoR-Filter's candidate set: rank only a seeded random draw of "
                                     "round(tau x k) candidates and keep its top k (paper: 7 to 64); "
                                     "null: rank every candidate", minimum=1)
    signal: str = option("color", "the score column to rank by", nonempty=True)


@register_selector("color")
class ColorSelector(RankingSelector):
    """Keep the candidates with the largest ``color`` (conditional loss reduction, nats).

    tau: None (rank every candidate) or a number >= 1: rank only a seeded uniform draw of
         ``round(tau * k)`` candidates (all of them when there are fewer) and keep its top k.
         Rows not drawn get rank -1 and the reason ``not drawn into the tau candidate set``.
    signal: the column ranked (default ``color``).
    Plus the shared options of ``RankingSelector`` (within_clusters, clusters, rounding, ...);
    with ``within_clusters`` the budget is split over the clusters of the drawn candidates.

    >>> from proxysel.selectors.base import ScoreTable
    >>> t = ScoreTable(ids=list("abcd"), columns={"color": np.array([0.1, 0.5, -0.2, 0.3])})
    >>> ColorSelector().select(t, 2).selected_ids
    ['b', 'd']
    """

    Params = ColorParams

    def _draw(self, rows: np.ndarray, k: int, rng: np.random.Generator, reason: list[str],
              notes: list[str]) -> np.ndarray:
        if self.tau is None:
            return rows
        m = math.floor(float(self.tau) * k + 0.5)
        if m >= len(rows):
            notes.append(f"tau={self.tau}: tau x k = {m} is not below the {len(rows)} candidates, so "
                         f"every candidate is ranked")
            return rows
        drawn = np.zeros(len(rows), dtype=bool)
        drawn[rng.choice(len(rows), size=m, replace=False)] = True
        why = f"not drawn into the tau candidate set ({m} of {len(rows)}), dropped"
        for i in rows[~drawn].tolist():
            reason[i] = why
        notes.append(f"tau={self.tau}: top {k} of {m} candidates drawn at random from {len(rows)}")
        return rows[drawn]

    def _order(self, values: np.ndarray | None, m: int, rng: np.random.Generator) -> np.ndarray:
        return order_by(values, "high")
