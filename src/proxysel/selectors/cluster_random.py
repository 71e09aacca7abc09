"""``cluster_random``: random within the embedding clusters that ``lp`` and ``lp_app`` use.

The Small2Large baseline (Mekala et al. 2024): the same number per cluster as LP keeps, drawn at
random instead of by learning percentage. Comparing lp_app with it separates what the LP signal
adds from what the clustering alone does.

Same clusters as lp/lp_app for the same table and seed: both are ``RankingSelector``s, whose
first seeded stream (``split_rngs``) goes to k-means over the same candidate rows, with the same
defaults (``LPParams``: 100 k-means clusters over ``embedding``). The candidates match when no
row has a NaN lp_app but a finite embedding (truncated rows are excluded by both).
"""

from __future__ import annotations

from dataclasses import dataclass

from proxysel.options import FieldError
from proxysel.selectors.lp import LPParams
from proxysel.selectors.random_sample import RandomSelector
from proxysel.selectors.registry import register_selector


@dataclass(frozen=True)
class ClusterRandomParams(LPParams):
    """lp/lp_app's clusters; ``within_clusters`` stays True (plain ``random`` draws from the whole pool)."""

    def __post_init__(self) -> None:
        if not self.within_clusters:
            raise FieldError("within_clusters", "cluster_random always draws within clusters; use random for "
                                                "the whole pool")
        super().__post_init__()


@register_selector("cluster_random")
class ClusterRandomSelector(RandomSelector):
    """A uniform random draw inside every cluster, the budget split in proportion to cluster size.

    clusters: K runs k-means (K clusters, default 100) on ``cluster_features``; None reads the
    table's ``cluster`` column.

    >>> import numpy as np
    >>> from proxysel.selectors.base import ScoreTable
    >>> t = ScoreTable(ids=list("abcdef"), columns={"cluster": np.array([0, 0, 0, 0, 1, 1])})
    >>> sel = ClusterRandomSelector(clusters=None).select(t, 3, seed=0)
    >>> int(sel.selected[:4].sum()), int(sel.selected[4:].sum())
    (2, 1)
    """

    Params = ClusterRandomParams
