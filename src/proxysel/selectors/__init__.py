"""Selectors: turn a score table and a budget into a selection, one file per method.

    from proxysel.selectors import ScoreTable, get_selector
    sel = get_selector("lp")(clusters=100).select(table, budget=0.1, seed=0)

``available_selectors()`` lists the registered names.
"""

from __future__ import annotations

from proxysel.selectors.base import ScoreTable, Selection, Selector, parse_budget, resolve_budget
from proxysel.selectors.registry import (
    available_selectors,
    get_selector,
    param_fields,
    register_selector,
    unregister_selector,
)

# Importing a selector module registers it, in the order the documentation lists them.
from proxysel.selectors import (  # noqa: E402,F401  isort:skip
    random_sample, top, lp, s2l, density, ask_llm, ifd, longest, cluster_random, color, rds, fuse,
)

__all__ = ["ScoreTable", "Selection", "Selector", "available_selectors", "get_selector", "param_fields",
           "parse_budget", "register_selector", "resolve_budget", "unregister_selector"]
