"""The ``density`` signal: the LSH kernel density of every stored embedding.

It reads the ``embedding`` vector set (so ``embedding`` must run first, in the same command or an
earlier one), sketches all of them with ``signals.density.lsh_density`` and writes the
``density`` column of scores.parquet. The sketch is one global computation, stored as a single
shard; its fingerprint holds the embedding stage's fingerprint, so new embeddings mean a new
density.

Options (``--density-tables/-buckets/-width``, ``--seed``; ``score.density`` in a run config):
``R`` hash tables, ``B`` buckets per table, ``r`` bucket width, ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from proxysel.data.example import Pool
from proxysel.errors import UsageError
from proxysel.options import check_fields, option
from proxysel.signals.base import EmbeddingSignal, register_signal
from proxysel.signals.density import DEFAULT_BUCKETS, DEFAULT_HASHES, DEFAULT_WIDTH, lsh_density


@dataclass(frozen=True)
class DensityConfig:
    """The LSH sketch of the ``density`` signal (Sachdeva et al. 2024)."""

    R: int = option(DEFAULT_HASHES, "hash tables", minimum=1, flag="--density-tables")
    B: int = option(DEFAULT_BUCKETS, "buckets per table", minimum=1, flag="--density-buckets")
    r: float = option(DEFAULT_WIDTH, "bucket width in embedding units", minimum=0, exclusive_min=True,
                      flag="--density-width")
    seed: int = option(0, "seed of the hash functions", flag="--seed")

    def __post_init__(self) -> None:
        check_fields(self)


@register_signal("density")
class DensitySignal(EmbeddingSignal):
    """Kernel density of every example's embedding (``score.density``: the sketch)."""

    columns = ("density",)
    section = "density"

    def compute_all(self, pool: Pool, inputs: dict[str, tuple[list[str], Any]]) -> Any:
        x = self.pool_vectors(pool, inputs)
        d = self.config.density
        try:
            values = lsh_density(x, R=d.R, B=d.B, r=d.r, seed=d.seed)
        except ValueError as e:
            raise UsageError(f"density: {e}") from None
        return pa.table({"id": pa.array([e.id for e in pool.examples], pa.string()),
                         "density": pa.array(values, pa.float64())})
