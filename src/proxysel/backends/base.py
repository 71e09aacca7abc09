"""What a backend is: the shard function types and the Backend protocol (see ``proxysel.backends``)."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

__all__ = ["Backend", "Compute", "Setup", "TokenCount"]

#: setup(device) -> state: loads the models of a stage; device None means the backend's default.
Setup = Callable[[Any], Any]
#: compute(state, examples, bar) -> pa.Table with an ``id`` column, one row per example, in order.
Compute = Callable[[Any, list, Any], Any]


class Backend(Protocol):
    name: str

    def map_shards(self, shards: list[tuple[int, list]], *, setup: Setup, compute: Compute,
                   device: str | None, bar: Any) -> Iterator[tuple[int, Any, dict[str, Any], int]]:
        """Compute every ``(index, examples)`` of ``shards``; yield ``(index, table, worker, tokens)``
        as each finishes (any order). ``worker`` describes where it ran (for the manifest);
        ``tokens`` is what ``compute`` reported to its bar for that shard (the tokens its model
        passes ran, for the compute ledger); ``bar`` (a ``proxysel.progress.Progress``) is advanced
        by examples and tokens."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this backend (name, address, actors)."""
        ...


class TokenCount:
    """The bar one shard's ``compute`` sees: it counts the tokens reported to it, and passes every
    update on to ``bar`` (the driver's progress bar; None on a Ray actor, whose driver advances its
    own bar from the count)."""

    def __init__(self, bar: Any = None) -> None:
        self.bar = bar
        self.tokens = 0

    def update(self, n: int, tokens: int = 0, **postfix: Any) -> None:
        self.tokens += int(tokens)
        if self.bar is not None:
            self.bar.update(n, tokens, **postfix)
