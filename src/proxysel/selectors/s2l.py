"""``s2l``: SmallToLarge data selection by loss-trajectory clusters (Yang et al. 2024).

Faithful to the official ``schedules/s2l.py`` (BigML-CS-UCLA/S2L), with a seed:

1. Optionally stratify by a ``source`` column: sources are visited smallest first; each gets
   ``remaining // sources_left``; a source no larger than that is taken whole, otherwise it is
   clustered and sampled as below (k-means runs per source, as in the official code).
2. k-means (L2, k=100 by default) on the proxy's loss trajectories.
3. Clusters of more than 2 members are visited smallest first; each gets
   ``remaining // clusters_left`` rows drawn uniformly without replacement, or is taken whole when
   it is not larger than that.
4. Clusters of <= 2 members are set aside and used only for what is left: the remainder is drawn
   uniformly from all of their members together.

Differences from the official code, all deliberate: draws are seeded (the official code calls
``np.random.choice`` unseeded); ties in cluster or source size go to the lower label / name (the
official ``np.argsort`` is not stable); rows with a NaN in their trajectory are excluded (the
official code sets NaN losses to 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from proxysel.options import option
from proxysel.selectors.base import (
    ClusterMixin,
    ClusterParams,
    ScoreTable,
    Selection,
    Selector,
    cluster_column,
    official_option,
    split_rngs,
)
from proxysel.selectors.registry import register_selector

#: ``stratify`` default: by ``source`` when every record has one (the official code always stratifies).
AUTO = "auto"


@dataclass(frozen=True)
class S2LParams(ClusterParams):
    """The official S2L defaults (schedules/s2l.py): k = 100 over the loss trajectories, clusters of
    <= 2 members set aside, 20 Lloyd iterations."""

    clusters: int | None = option(100, "k-means clusters K over cluster_features (default 100, the paper's); "
                                       "null: the scores' own cluster column", minimum=1)
    cluster_features: str = option("trajectory", "the 2-D column k-means reads (the loss trajectories)")
    stratify: str | None = option("auto", "s2l: split the budget by this record field first (e.g. source), "
                                          "smallest group first, as the official code always does; auto: by "
                                          "source when every record has one; null: no split")
    set_aside: int = option(2, "s2l: clusters of at most this many members only fill the remainder "
                               "(official: 2)", minimum=0)
    official: bool = official_option()

    def __post_init__(self) -> None:
        if self.official:  # schedules/s2l.py: faiss k-means (k=100, 20 iterations), per source
            for name, value in (("kmeans", "faiss"), ("clusters", 100), ("kmeans_iter", 20), ("set_aside", 2),
                                ("stratify", "source")):
                object.__setattr__(self, name, value)
        super().__post_init__()


@register_selector("s2l")
class S2LSelector(ClusterMixin, Selector):
    """Cluster loss trajectories, then sample evenly across clusters, smallest first.

    clusters:         K for k-means on ``cluster_features`` (default 100, the paper's); None uses
                      the table's ``cluster`` column instead.
    cluster_features: the 2-D column to cluster (default ``trajectory``: loss per checkpoint).
    stratify:         None, or a column of group names (e.g. ``"source"``) to balance first.
    set_aside:        clusters of at most this many members only fill the remainder (official: 2).
    kmeans_iter:      Lloyd iterations (official: 20).
    include_truncated: let truncated rows compete (their trajectory must still be finite).

    rank is the draw order inside the row's cluster (inside the set-aside pool for its members).
    """

    Params = S2LParams

    def required_columns(self) -> tuple[str, ...]:
        return (self.cluster_features,) if self.clusters is not None else ()

    def reads(self) -> tuple[str, ...]:
        extra = ("cluster",) if self.clusters is None else ()
        return self.required_columns() + extra

    def stratify_field(self) -> str | None:
        return self.stratify

    def _stratum_column(self, table: ScoreTable) -> str | None:
        """The column to split by: ``stratify``, or with ``auto`` the ``source`` column when the
        selection stage could fill it (every record has a ``source``)."""
        if self.stratify == AUTO:
            return "source" if "source" in table.columns else None
        return self.stratify

    def select(self, table: ScoreTable, budget: float | int, *, seed: Any = 0) -> Selection:
        cluster_rng, rng = split_rngs(seed)
        candidates, reason = self._candidates(table, self.required_columns())
        if self.clusters is None:
            cluster_column(table)  # fail early, naming the columns there are
        rows = np.flatnonzero(candidates)
        notes: list[str] = []
        k = self._budget(budget, table, len(rows))

        n = table.n
        out = _Outcome(n)
        if self.clusters is None:
            out.cluster[:] = cluster_column(table)

        stratum = self._stratum_column(table)
        if stratum is None:
            strata = [("", rows)]
        else:
            names = np.asarray(table.column(stratum)).astype(str)[rows]
            uniq, inverse, counts = np.unique(names, return_inverse=True, return_counts=True)
            by_name = np.argsort(inverse, kind="stable")
            bounds = np.concatenate(([0], np.cumsum(counts)))
            strata = [(f"source {str(uniq[s])!r}: ", rows[by_name[bounds[s]:bounds[s + 1]]])
                      for s in np.argsort(counts, kind="stable")]  # smallest first

        remaining = k
        label_offset = 0
        for s, (prefix, members) in enumerate(strata):
            quota = remaining // (len(strata) - s)
            if len(members) <= quota:
                out.selected[members] = True
                for i in members.tolist():
                    reason[i] = f"{prefix}{len(members)} rows <= quota {quota}: taken whole, kept"
                remaining -= len(members)
                continue
            labels = self._cluster_labels(table, members, cluster_rng, notes)
            if self.clusters is not None:  # k-means labels are per stratum: make them unique
                labels = labels + label_offset
                label_offset = int(labels.max()) + 1
            out.cluster[members] = labels
            self._sample_clusters(members, labels, quota, rng, out, reason, prefix)
            remaining -= int(out.selected[members].sum())

        if remaining:  # not reached by the official arithmetic (checked by brute force); a guard
            spare = np.flatnonzero(candidates & ~out.selected)
            extra = rng.permutation(spare)[:remaining]
            out.selected[extra] = True
            for i in extra.tolist():
                reason[i] = "filled at random to meet the budget, kept"
            notes.append(f"{remaining} rows filled at random to meet the budget")
        return self._selection(table, out.selected, out.rank, out.cluster, reason, k, notes)

    def _sample_clusters(self, members: np.ndarray, labels: np.ndarray, n: int,
                         rng: np.random.Generator, out: "_Outcome", reason: list[str],
                         prefix: str) -> None:
        """The official ``faiss_kmeans_selection`` after clustering: ``n`` rows of ``members``."""
        uniq, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        by_label = np.argsort(inverse, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(counts)))

        def rows_of(c: int) -> np.ndarray:
            return members[by_label[bounds[c]:bounds[c + 1]]]

        big = [c for c in np.argsort(counts, kind="stable") if counts[c] > self.set_aside]
        for j, c in enumerate(big):
            quota = n // (len(big) - j)
            cluster_rows = rows_of(c)
            drawn = rng.permutation(cluster_rows)
            out.rank[drawn] = np.arange(1, len(drawn) + 1)
            size = len(drawn)
            if size > quota:
                out.selected[drawn[:quota]] = True
                n -= quota
                head = f"{prefix}cluster {uniq[c]} ({size} rows, quota {quota}): draw"
                for r, i in enumerate(drawn.tolist()):
                    reason[i] = f"{head} {r + 1} of {size}, {'kept' if r < quota else 'dropped'}"
            else:
                out.selected[drawn] = True
                n -= size
                for i in drawn.tolist():
                    reason[i] = (f"{prefix}cluster {uniq[c]} ({size} rows <= quota {quota}): "
                                 f"taken whole, kept")

        # The set-aside pool: positions (in ``members``) of every row of a cluster of <= set_aside.
        small = counts[inverse] <= self.set_aside
        pool_pos = np.flatnonzero(small)
        if n > 0:
            pool_pos = rng.permutation(pool_pos)
            out.rank[members[pool_pos]] = np.arange(1, len(pool_pos) + 1)
            out.selected[members[pool_pos[:n]]] = True
        pool_labels = labels[pool_pos].tolist()
        for r, (i, label) in enumerate(zip(members[pool_pos].tolist(), pool_labels)):
            head = f"{prefix}cluster {label} (<= {self.set_aside} rows, set aside): "
            if n > 0:
                reason[i] = head + (f"remainder draw {r + 1} of {len(pool_pos)}, "
                                    f"{'kept' if r < n else 'dropped'}")
            else:
                reason[i] = head + "no remainder, dropped"


class _Outcome:
    def __init__(self, n: int) -> None:
        self.selected = np.zeros(n, dtype=bool)
        self.rank = np.full(n, -1, dtype=np.int64)
        self.cluster = np.full(n, -1, dtype=np.int64)
