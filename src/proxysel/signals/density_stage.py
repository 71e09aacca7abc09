"""The ``density`` stage of ``proxysel score``: the LSH kernel density of every stored embedding.

It reads ``RUN/embeddings.parquet`` (so ``embedding`` must run first, in the same command or an
earlier one), sketches all of them with ``signals.density.lsh_density`` and writes the
``density`` column of scores.parquet. The sketch is one global computation, stored as a single
shard; its fingerprint holds the embedding stage's fingerprint, so new embeddings mean a new
density.

Options (``--density-tables/-buckets/-width``, ``--seed``; ``score.density`` in a run config):
``R`` hash tables, ``B`` buckets per table, ``r`` bucket width, ``seed``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from proxysel.data.example import Pool
from proxysel.errors import UsageError
from proxysel.signals.base import ScoreOptions, register_signal
from proxysel.signals.density import DEFAULT_BUCKETS, DEFAULT_HASHES, DEFAULT_WIDTH, lsh_density

log = logging.getLogger(__name__)

_KEYS = ("R", "B", "r", "seed")


def density_options(options: dict[str, Any]) -> dict[str, Any]:
    """``{"R", "B", "r", "seed"}`` with defaults filled in; UsageError for unknown keys."""
    unknown = sorted(set(options) - set(_KEYS))
    if unknown:
        raise UsageError(f"density: unknown option(s) {unknown}; choose from {list(_KEYS)}")
    out = {"R": DEFAULT_HASHES, "B": DEFAULT_BUCKETS, "r": DEFAULT_WIDTH, "seed": 0}
    out.update({k: v for k, v in options.items() if v is not None})
    return out


@register_signal("density")
def run_density_stage(run: Any, pool: Pool, opts: ScoreOptions) -> None:
    import pyarrow as pa

    params = density_options(dict(opts.density))
    embedding_stage = run.manifest["stages"].get("embedding")
    if not run.embeddings_path.exists():
        raise UsageError(f"the density signal reads the embeddings: add 'embedding' to --signals (run folder "
                         f"{run.path} has none yet)")
    fingerprint = {"data": pool.fingerprint, "embeddings": (embedding_stage or {}).get("fingerprint"),
                   "embeddings_model": run.manifest.get("embeddings", {}).get("model"), **params}
    stage = run.stage("density", fingerprint)
    t0 = time.perf_counter()
    computed = 0
    if not stage.shard_done(0):
        ids, vecs = run.read_embeddings()
        pos = {i: k for k, i in enumerate(ids)}
        missing = [e.id for e in pool.examples if e.id not in pos]
        if missing:
            raise UsageError(f"{len(missing)} examples have no embedding (first: {missing[:3]}); rerun the "
                             "embedding signal")
        rows = np.asarray([pos[e.id] for e in pool.examples], dtype=np.int64)
        x = vecs[rows]
        try:
            values = lsh_density(x, R=int(params["R"]), B=int(params["B"]), r=float(params["r"]),
                                 seed=int(params["seed"]))
        except ValueError as e:
            raise UsageError(f"density: {e}") from None
        stage.write_shard(0, pa.table({"id": pa.array([e.id for e in pool.examples], pa.string()),
                                       "density": pa.array(values, pa.float64())}))
        computed = 1
    table = stage.read_shards(1)
    stage.merge_scores(table)
    elapsed = time.perf_counter() - t0
    stage.mark_complete({"seconds": round(elapsed, 3), "shards_computed": computed, "shards": 1,
                         "examples": table.num_rows, "params": params})
    log.info("density: %d examples (R=%s, B=%s, r=%s) in %.1fs%s", table.num_rows, params["R"], params["B"],
             params["r"], elapsed, "" if computed else " (already computed)")
