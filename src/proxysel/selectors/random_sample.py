"""``random``: uniform sampling without replacement, the baseline of every paper.

With ``within_clusters=True`` it is the "cluster-random" baseline of Small2Large (the same
number per cluster as LP, drawn at random).
"""

from __future__ import annotations

import numpy as np

from proxysel.selectors.base import RankingSelector
from proxysel.selectors.registry import register_selector


@register_selector("random")
class RandomSelector(RankingSelector):
    """Keep a uniform random subset of the candidates: a seeded permutation, the first ``budget``.

    rank = position in the random order (1 = drawn first).

    >>> from proxysel.selectors.base import ScoreTable
    >>> t = ScoreTable(ids=["a", "b", "c", "d"])
    >>> RandomSelector().select(t, 2, seed=0).n_selected
    2
    """

    signal = None

    def _order(self, values: np.ndarray | None, m: int, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(m)
