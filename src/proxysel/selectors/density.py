"""``density``: inverse-propensity sampling by embedding density (Sachdeva et al. 2024).

Each candidate is drawn with probability proportional to 1 / density (the ``density`` column,
from ``proxysel.signals.density``), so examples from crowded regions of the embedding space are
kept less often and the selection covers the space more evenly.

Without replacement this is Gumbel top-k: ``log(1/density) + Gumbel(0, 1)`` for every candidate,
keep the ``budget`` largest. That is exactly sequential sampling without replacement with those
weights (Vieira 2014; Kool et al. 2019), in one vectorised pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxysel.options import FieldError, option
from proxysel.selectors.base import (
    RankingParams,
    RankingSelector,
    ScoreTable,
    Selection,
    allocate_largest_remainder,
    format_value,
    resolve_budget,
    split_rngs,
)
from proxysel.selectors.registry import register_selector


@dataclass(frozen=True)
class DensityParams(RankingParams):
    with_replacement: bool = option(False, "density: sample with replacement (a count budget counts draws)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.with_replacement and self.size_power != 1.0:
            # draws with replacement split the budget in proportion to cluster size
            raise FieldError("size_power", "applies to sampling without replacement only")


@register_selector("density")
class DensitySelector(RankingSelector):
    """Sample with probability proportional to 1/density.

    with_replacement: False (default): Gumbel top-k, ``budget`` distinct examples, rank = order of
                      the perturbed keys. True: ``budget`` independent draws; ``Selection.count``
                      says how often each row was drawn, ``selected`` is count > 0 (so fewer
                      distinct rows than the budget), rank = order of first draw. A count budget
                      may exceed the number of candidates (it counts draws).
    Plus the shared options of ``RankingSelector`` (``within_clusters`` samples inside clusters).

    >>> from proxysel.selectors.base import ScoreTable
    >>> t = ScoreTable(ids=list("abcd"), columns={"density": np.array([0.5, 0.5, 0.01, 0.5])})
    >>> DensitySelector().select(t, 1, seed=0).selected_ids
    ['c']
    """

    signal = "density"

    Params = DensityParams

    @staticmethod
    def _check_positive(values: np.ndarray) -> None:
        if len(values) and values.min() <= 0:
            raise ValueError("density: scores must be > 0 (a sketch scores every row at least 1/N); "
                             f"got {values.min()}")

    def _order(self, values: np.ndarray | None, m: int, rng: np.random.Generator) -> np.ndarray:
        self._check_positive(values)
        keys = -np.log(values) + rng.gumbel(size=m)
        return np.argsort(-keys, kind="stable")

    def select(self, table: ScoreTable, budget: float | int, *, seed=0) -> Selection:
        if not self.with_replacement:
            return super().select(table, budget, seed=seed)
        return self._with_replacement(table, budget, seed)

    def _with_replacement(self, table: ScoreTable, budget: float | int, seed) -> Selection:
        cluster_rng, rng = split_rngs(seed)
        candidates, reason = self._candidates(table, self.required_columns())
        rows = np.flatnonzero(candidates)
        notes: list[str] = []
        if len(rows) == 0:
            self._budget(budget, table, 0)  # raises the "no candidates" error
        # Draws with replacement may outnumber the candidates; a fraction is of the pool.
        k = resolve_budget(budget, max(table.n, int(budget) if isinstance(budget, (int, np.integer)) else 0))
        values = table.column(self.signal)[rows].astype(np.float64)
        self._check_positive(values)
        n = table.n
        cluster = np.full(n, -1, dtype=np.int64)
        if self.within_clusters:
            labels = self._cluster_labels(table, rows, cluster_rng, notes)
            cluster[rows] = labels
        else:
            labels = np.zeros(len(rows), dtype=np.int64)
        group_ids, group_of = np.unique(labels, return_inverse=True)
        sizes = np.bincount(group_of, minlength=len(group_ids))
        quotas = allocate_largest_remainder(sizes, k, over=True)

        count = np.zeros(n, dtype=np.int64)
        rank = np.full(n, -1, dtype=np.int64)
        by_group = np.argsort(group_of, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(sizes)))
        for g in range(len(group_ids)):
            members = by_group[bounds[g]:bounds[g + 1]]
            p = 1.0 / values[members]
            draws = rng.choice(len(members), size=int(quotas[g]), replace=True, p=p / p.sum())
            count[rows[members]] = np.bincount(draws, minlength=len(members))
            first = np.unique(draws, return_index=True)
            order = first[0][np.argsort(first[1], kind="stable")]
            rank[rows[members[order]]] = np.arange(1, len(order) + 1)
        selected = count > 0
        for j, i in enumerate(rows.tolist()):
            where = f"cluster {cluster[i]}: " if self.within_clusters else ""
            c = int(count[i])
            reason[i] = (f"{where}density={format_value(values[j])}, drawn {c} time{'s' if c != 1 else ''}, "
                         f"{'kept' if c else 'dropped'}")
        notes.append(f"{k} draws with replacement gave {int(selected.sum())} distinct examples")
        return self._selection(table, selected, rank, cluster, reason, k, notes, count=count)
