"""Selectors: turn a score table and a budget into a selection, one file per method.

    from proxysel.selectors import ScoreTable, get_selector
    sel = get_selector("lp")(clusters=100).select(table, budget=0.1, seed=0)

``available_selectors()`` lists the registered names.
"""

from __future__ import annotations

from proxysel.selectors.base import ScoreTable, Selection, Selector, resolve_budget
from proxysel.selectors.registry import available_selectors, get_selector, register_selector

# Importing a selector module registers it.
from proxysel.selectors import (  # noqa: E402,F401  isort:skip
    ask_llm, color, density, fuse, ifd, lp, random_sample, rds, s2l, top,
)

__all__ = ["ScoreTable", "Selection", "Selector", "available_selectors", "get_selector",
           "register_selector", "resolve_budget"]
