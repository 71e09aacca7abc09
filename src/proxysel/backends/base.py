"""What a backend is: the shard function types and the Backend protocol (see ``proxysel.backends``)."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

#: setup(device) -> state: loads the models of a stage; device None means the backend's default.
Setup = Callable[[Any], Any]
#: compute(state, examples, bar) -> pa.Table with an ``id`` column, one row per example, in order.
Compute = Callable[[Any, list, Any], Any]


class Backend(Protocol):
    name: str

    def map_shards(self, shards: list[tuple[int, list]], *, setup: Setup, compute: Compute,
                   device: str | None, bar: Any) -> Iterator[tuple[int, Any, dict[str, Any]]]:
        """Compute every ``(index, examples)`` of ``shards``; yield ``(index, table, worker)`` as
        each finishes (any order). ``worker`` describes where it ran (for the manifest); ``bar``
        (a ``proxysel.progress.Progress``) is advanced by examples and tokens."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this backend (name, address, actors)."""
        ...
