"""``proxysel score``: every asked signal of the pool into the run folder, resumably.

Signals run in ``ScoreConfig.ordered_signals`` order (a signal after those it ``requires``). A
sharded signal runs through ``stages.sharded.run_sharded`` on the configured backend; a global one
(``density``) reads the vector sets it requires and is stored as a single shard.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from proxysel import backends
from proxysel.data.example import Pool
from proxysel.errors import UsageError
from proxysel.options import ReadConfig, RuntimeConfig
from proxysel.signals import get_signal
from proxysel.signals.base import Signal
from proxysel.stages.inputs import read_input, record_data, record_reference
from proxysel.stages.sharded import run_sharded
from proxysel.store import Run
from proxysel.store.run import embedding_matrix

log = logging.getLogger(__name__)

__all__ = ["run_signal", "score", "score_pool"]


def make_backend(runtime: RuntimeConfig) -> Any:
    return backends.make_backend(runtime.backend, address=runtime.ray_address, actors=runtime.ray_actors,
                                 cpus_per_actor=runtime.ray_cpus_per_actor)


def score_pool(run: Any, pool: Pool, config: Any, runtime: RuntimeConfig, reference: Pool | None = None) -> None:
    """Compute ``config.signals`` (a ScoreConfig) of ``pool`` into ``run`` (an open ``store.Run``)."""
    make_backend(runtime)  # unknown backend or a missing ray: exit 2 before any work
    try:
        for name in config.ordered_signals():
            run_signal(run, pool, get_signal(name)(config, runtime, reference))
    finally:
        backends.shutdown()


def _upstream(run: Any, signal: Signal) -> dict[str, Any]:
    stages = run.manifest.get("stages") or {}
    out: dict[str, Any] = {}
    for dep in signal.requires:
        if dep not in run.vector_sets() and dep not in run.score_columns():
            raise UsageError(f"the {signal.name} signal reads {dep}: add '{dep}' to --signals (run folder "
                             f"{run.path} has none yet)")
        out[dep] = (stages.get(dep) or {}).get("fingerprint")
        out[f"{dep}_model"] = ((run.manifest.get("vectors") or {}).get(dep) or {}).get("model")
    return out


def run_signal(run: Any, pool: Pool, signal: Signal) -> None:
    """Compute one signal into its stage (resuming it) and store its columns or vectors."""
    if signal.needs_reference and signal.reference is None:
        raise UsageError(f"the {signal.name} signal scores the pool against a reference set: pass --reference "
                         "FILE (reference: in a run config)")
    upstream = {**_upstream(run, signal), **signal.prepare(run)}
    fingerprint = signal.fingerprint(pool, upstream)
    if signal.sharded:
        desc = f"{signal.name} [{signal.model}]" if signal.model else signal.name
        table = run_sharded(run, pool, stage_name=signal.name, fingerprint=fingerprint,
                            shard_size=signal.runtime.shard_size, setup=signal.setup, compute=signal.compute,
                            desc=desc, merge=not signal.vectors, backend=make_backend(signal.runtime),
                            device=signal.runtime.device)
    else:
        table = _run_global(run, pool, signal, fingerprint)
    if signal.vectors:
        _store_vectors(run, signal, table, signal.name)
    if signal.reference_vectors and signal.reference is not None:
        name = f"{signal.name}_reference"
        ref = signal.reference
        table = run_sharded(run, ref, stage_name=name, fingerprint=signal.fingerprint(ref, upstream),
                            shard_size=signal.runtime.shard_size, setup=signal.setup, compute=signal.compute,
                            desc=f"{name} [{signal.model}]", merge=False, backend=make_backend(signal.runtime),
                            device=signal.runtime.device)
        _store_vectors(run, signal, table, name)


def _run_global(run: Any, pool: Pool, signal: Signal, fingerprint: dict[str, Any]) -> Any:
    """A signal computed at once from the vector sets it requires, stored as a single shard."""
    stage = run.stage(signal.name, fingerprint)
    t0 = time.perf_counter()
    computed = 0
    if not stage.shard_done(0):
        inputs = {dep: run.read_vectors(dep) for dep in signal.requires if dep in run.vector_sets()}
        stage.write_shard(0, signal.compute_all(pool, inputs))
        computed = 1
    table = stage.read_shards(1)
    if not signal.vectors:
        stage.merge_scores(table)
    elapsed = time.perf_counter() - t0
    stage.mark_complete({"seconds": round(elapsed, 3), "shards_computed": computed, "shards": 1,
                         "examples": table.num_rows, **signal.stage_info()})
    log.info("%s: %d examples in %.1fs%s", signal.name, table.num_rows, elapsed, "" if computed else
             " (already computed)")
    return table


def _store_vectors(run: Any, signal: Signal, table: Any, name: str) -> None:
    """Vector set ``name`` of a ``vectors`` signal, from the stage of that name (rebuildable from it)."""
    ids, vecs = embedding_matrix(table)
    run.write_vectors(name, ids, vecs, model=signal.model, stage=name)


def score(data: str | Path, *, out: str | Path, config: Any, read: ReadConfig, runtime: RuntimeConfig,
          reference: str | Path | None = None, overwrite: bool = False) -> Path:
    """``proxysel score``: read ``data`` (and ``reference``) before any model work (bad input: exit 2,
    nothing written), then compute ``config.signals`` into the run folder ``out``."""
    make_backend(runtime)  # unknown backend, misplaced Ray options or a missing ray: exit 2 before any work
    needs_ref = [n for n in config.signals if get_signal(n).needs_reference]
    if needs_ref and reference is None:
        raise UsageError(f"--signals {','.join(needs_ref)} score the pool against a reference set: pass "
                         "--reference FILE")
    pool = read_input(data, read)
    ref = read_input(reference, read, what="reference") if reference is not None else None
    with Run.open(out, overwrite=overwrite) as run:
        record_data(run, data, pool, read)
        if ref is not None:
            record_reference(run, reference, ref, read)
        score_pool(run, pool, config, runtime, ref)
    return Path(out)
