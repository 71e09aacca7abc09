"""proxysel: select the training data of a large language model with a small proxy model.

The public API mirrors the command line::

    import proxysel
    run = proxysel.score("pool.jsonl", signals=["loss"], model="smollm2-135m", out="runs/r1")

Importing proxysel is cheap: torch, transformers and ray are imported only by the functions
that need them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("score", "train_proxy", "select", "compare", "run", "report", "explain", "bench", "demo", "verify",
        "read_pool")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        if name == "read_pool":
            from proxysel.data import read_pool

            return read_pool
        from proxysel import api

        return getattr(api, name)
    raise AttributeError(f"module 'proxysel' has no attribute {name!r}")
