"""``ask_llm``: keep the examples the judge model most often calls informative (Sachdeva et al. 2024).

The ``ask_llm`` column is P("yes") at the first answer token; the top scores are kept.
"""

from __future__ import annotations

import numpy as np

from proxysel.selectors.base import RankingSelector
from proxysel.selectors.registry import register_selector


@register_selector("ask_llm")
class AskLLMSelector(RankingSelector):
    """Highest ``ask_llm`` score first (ties: pool order). Shared options as ``RankingSelector``.

    >>> from proxysel.selectors.base import ScoreTable
    >>> t = ScoreTable(ids=list("abc"), columns={"ask_llm": np.array([0.2, 0.9, 0.5])})
    >>> AskLLMSelector().select(t, 2).selected_ids
    ['b', 'c']
    """

    signal = "ask_llm"

    def _order(self, values: np.ndarray | None, m: int, rng: np.random.Generator) -> np.ndarray:
        return np.argsort(-values, kind="stable")
