"""Signals: per-example scores of the pool, one class per signal behind a registry (``signals.base``).

Importing this package registers the built-in signals, in the order ``--signals`` lists them.
"""

from __future__ import annotations

from proxysel.signals.base import (
    Signal,
    available_signals,
    derivable,
    get_signal,
    producer_of,
    register_signal,
    score_signals,
    unregister_signal,
)

# Importing a signal module registers it.
from proxysel.signals import (  # noqa: E402,F401  isort:skip
    loss, mink, ifd, ask_llm, embedding, density_stage, color, rds, near_dup, lexical, lp,
)

__all__ = ["Signal", "available_signals", "derivable", "get_signal", "producer_of", "register_signal",
           "score_signals", "unregister_signal"]
