"""The local backend: the shards of a stage one after another, in this process."""

from __future__ import annotations

from typing import Any, Iterator

from proxysel.backends.base import Compute, Setup, TokenCount


class LocalBackend:
    """Loads the models once (``setup``) and computes the shards in order. The default."""

    name = "local"

    def map_shards(self, shards: list[tuple[int, list]], *, setup: Setup, compute: Compute,
                   device: str | None, bar: Any) -> Iterator[tuple[int, Any, dict[str, Any], int]]:
        if not shards:
            return
        state = setup(device)
        worker = {"device": device or "cpu"}
        for index, examples in shards:
            count = TokenCount(bar)
            table = compute(state, examples, count)
            yield index, table, worker, count.tokens

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}
