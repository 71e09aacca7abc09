"""``cluster_random``: random within the embedding clusters that ``lp`` and ``lp_app`` use.

The Small2Large baseline (Mekala et al. 2024): the same number per cluster as LP keeps, drawn at
random instead of by learning percentage. Comparing lp_app with it separates what the LP signal
adds from what the clustering alone does.

Same clusters as lp/lp_app for the same table and seed: both are ``RankingSelector``s, whose
first seeded stream (``split_rngs``) goes to k-means over the same candidate rows, with the same
defaults (``clusters``, ``cluster_features``, ``rounding``, ``kmeans_iter``; ``selection`` gives
both ``DEFAULT_CLUSTERS`` when the table has no ``cluster`` column). The candidates match when no
row has a NaN lp_app but a finite embedding (truncated rows are excluded by both).
"""

from __future__ import annotations

from proxysel.selectors.random_sample import RandomSelector
from proxysel.selectors.registry import register_selector


@register_selector("cluster_random")
class ClusterRandomSelector(RandomSelector):
    """A uniform random draw inside every cluster, the budget split in proportion to cluster size.

    clusters: None reads the table's ``cluster`` column; K runs k-means (K clusters) on
    ``cluster_features``. ``within_clusters`` is always True (plain ``random`` draws from the
    whole pool); it is a parameter only so that ``get_params`` round-trips.

    >>> import numpy as np
    >>> from proxysel.selectors.base import ScoreTable
    >>> t = ScoreTable(ids=list("abcdef"), columns={"cluster": np.array([0, 0, 0, 0, 1, 1])})
    >>> sel = ClusterRandomSelector().select(t, 3, seed=0)
    >>> int(sel.selected[:4].sum()), int(sel.selected[4:].sum())
    (2, 1)
    """

    def __init__(self, *, within_clusters: bool = True, clusters: int | None = None,
                 cluster_features: str = "embedding", rounding: str = "exact", kmeans_iter: int = 20,
                 include_truncated: bool = False) -> None:
        if within_clusters is not True:
            raise ValueError("cluster_random always draws within clusters; use random for the whole pool")
        super().__init__(within_clusters=True, clusters=clusters, cluster_features=cluster_features,
                         rounding=rounding, kmeans_iter=kmeans_iter, include_truncated=include_truncated)
