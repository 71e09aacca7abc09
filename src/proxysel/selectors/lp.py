"""``lp`` and ``lp_app``: the Small2Large selection (Mekala et al. 2024).

The pool is split into k-means clusters of sentence embeddings; inside every cluster the lowest
learning percentage comes first (lowest = hardest = kept). By default the budget is met exactly
(largest-remainder allocation across clusters, in proportion to their size);
``rounding="official"`` takes ``ceil(n_c / round(100/pct))`` from every cluster as the official
``subset.py`` does. The signals themselves come from ``proxysel.signals.lp``.
"""

from __future__ import annotations

import numpy as np

from proxysel.selectors.base import RankingSelector
from proxysel.selectors.registry import register_selector


class _LearningPercentage(RankingSelector):
    def __init__(self, *, within_clusters: bool = True, clusters: int | None = None,
                 cluster_features: str = "embedding", rounding: str = "exact", kmeans_iter: int = 20,
                 include_truncated: bool = False) -> None:
        super().__init__(within_clusters=within_clusters, clusters=clusters,
                         cluster_features=cluster_features, rounding=rounding,
                         kmeans_iter=kmeans_iter, include_truncated=include_truncated)

    def _order(self, values: np.ndarray | None, m: int, rng: np.random.Generator) -> np.ndarray:
        return np.argsort(values, kind="stable")


@register_selector("lp")
class LPSelector(_LearningPercentage):
    """Clustered, lowest ``lp`` (LP(1)) first.

    clusters: None uses the table's ``cluster`` column; K runs k-means (K clusters) on the
    ``embedding`` column. ``within_clusters=False`` gives the global cut (no clusters).

    >>> from proxysel.selectors.base import ScoreTable
    >>> t = ScoreTable(ids=list("abcd"), columns={"lp": np.array([0.9, 0.1, 0.5, 0.2]),
    ...                                           "cluster": np.array([0, 0, 1, 1])})
    >>> LPSelector().select(t, 2).selected_ids
    ['b', 'd']
    """

    signal = "lp"


@register_selector("lp_app")
class LPAppSelector(_LearningPercentage):
    """Clustered, lowest ``lp_app`` (LP_app(1), one epoch of proxy training) first."""

    signal = "lp_app"
