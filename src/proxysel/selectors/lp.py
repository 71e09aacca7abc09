"""``lp`` and ``lp_app``: the Small2Large selection (Mekala et al. 2024).

The pool is split into k-means clusters of sentence embeddings; inside every cluster the lowest
learning percentage comes first (lowest = hardest = kept). By default the budget is met exactly
(largest-remainder allocation across clusters, in proportion to their size);
``rounding="official"`` takes ``ceil(n_c / round(100/pct))`` from every cluster as the official
``subset.py`` does. The signals themselves come from ``proxysel.signals.lp``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxysel.options import option
from proxysel.selectors.base import RankingParams, RankingSelector, official_option
from proxysel.selectors.registry import register_selector

#: The number of clusters the official README runs clustering.py with (dheeraj7596/Small2Large).
OFFICIAL_LP_CLUSTERS = 1000


@dataclass(frozen=True)
class LPParams(RankingParams):
    """The Small2Large defaults: ranked inside 100 k-means clusters of the sentence embeddings."""

    within_clusters: bool = option(True, "rank inside clusters (false: one global cut, no embeddings needed)",
                                   negative="--global")
    clusters: int | None = option(100, "k-means clusters K over cluster_features (the official code: 1,000 "
                                       "on Alpaca); null: the scores' own cluster column", minimum=1)
    official: bool = official_option()

    def __post_init__(self) -> None:
        if self.official:  # Small2Large clustering.py (KMeans, README: 1,000 clusters) and subset.py (ceil)
            object.__setattr__(self, "kmeans", "sklearn")
            object.__setattr__(self, "rounding", "official")
            object.__setattr__(self, "within_clusters", True)
            if self.clusters is not None:  # None: a cluster column the official clustering wrote
                object.__setattr__(self, "clusters", OFFICIAL_LP_CLUSTERS)
        if not self.within_clusters and self.clusters is not None:
            object.__setattr__(self, "clusters", None)  # the global cut needs no clusters
        super().__post_init__()


class _LearningPercentage(RankingSelector):
    Params = LPParams

    def _order(self, values: np.ndarray | None, m: int, rng: np.random.Generator) -> np.ndarray:
        return np.argsort(values, kind="stable")


@register_selector("lp")
class LPSelector(_LearningPercentage):
    """Clustered, lowest ``lp`` (LP(1)) first.

    clusters: K runs k-means (K clusters, default 100) on the ``embedding`` column; None uses the
    table's ``cluster`` column. ``within_clusters=False`` gives the global cut (no clusters).

    >>> from proxysel.selectors.base import ScoreTable
    >>> t = ScoreTable(ids=list("abcd"), columns={"lp": np.array([0.9, 0.1, 0.5, 0.2]),
    ...                                           "cluster": np.array([0, 0, 1, 1])})
    >>> LPSelector(clusters=None).select(t, 2).selected_ids
    ['b', 'd']
    """

    signal = "lp"


@register_selector("lp_app")
class LPAppSelector(_LearningPercentage):
    """Clustered, lowest ``lp_app`` (LP_app(1), one epoch of proxy training) first."""

    signal = "lp_app"
