"""``longest``: the longest responses first, the baseline of Zhao et al. (2024), "Long Is More for
Alignment", who fine-tune on the 1,000 examples of a pool with the longest responses and find it
beats far costlier selections. The paper's selection script is not in its official repository
(tml-epfl/long-is-more-for-alignment ships the selected data only), so "length" here is the
scored response tokens of the proxy's tokenizer, the ``n_response_tokens`` column every loss
and train-proxy run writes (after ``--max-length`` truncation, so responses cut at the limit tie).
"""

from __future__ import annotations

import numpy as np

from proxysel.selectors.base import RankingSelector
from proxysel.selectors.registry import register_selector
from proxysel.selectors.top import order_by


@register_selector("longest")
class LongestSelector(RankingSelector):
    """Keep the candidates with the most response tokens; ties keep pool order.

    Reads ``n_response_tokens``. Takes the shared options of ``RankingSelector``
    (``within_clusters=True`` keeps the longest of every cluster, in proportion to its size).

    >>> from proxysel.selectors.base import ScoreTable
    >>> t = ScoreTable(ids=list("abcd"), columns={"n_response_tokens": np.array([5, 9, 2, 9])})
    >>> LongestSelector().select(t, 2).selected_ids
    ['b', 'd']
    """

    signal = "n_response_tokens"

    def _order(self, values: np.ndarray | None, m: int, rng: np.random.Generator) -> np.ndarray:
        return order_by(values, "high")
