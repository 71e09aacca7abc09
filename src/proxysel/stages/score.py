"""``proxysel score``: every asked signal of the pool into the run folder, resumably.

Signals run in ``ScoreConfig.ordered_signals`` order (a signal after those it ``requires``). A
sharded signal runs through ``stages.sharded.run_sharded`` on the configured backend; a global one
(``density``) reads the vector sets it requires and is stored as a single shard.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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


def score_pool(run: Any, pool: Pool, config: Any, runtime: RuntimeConfig,
               reference: Pool | None = None) -> None:
    """Compute ``config.signals`` (a ScoreConfig) of ``pool`` into ``run`` (an open ``store.Run``)."""
    signals = [get_signal(name)(config, runtime, reference) for name in config.ordered_signals()]
    try:
        for signal in signals:
            run_signal(run, pool, signal)
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


def not_applicable(pool: Pool, signal: Signal) -> dict[str, str]:
    """Example id -> why ``signal`` does not apply to it (``Signal.needs``), for the examples it does
    not fit. UsageError (exit 2) when it fits none of them: the pool is refused before any model loads."""
    missing = {e.id: why for e in pool.examples if (why := e.missing(signal.needs))}
    if missing and len(missing) == len(pool.examples):
        layouts = Counter(e.format for e in pool.examples)
        shown = ", ".join(f"{n} {fmt}" for fmt, n in layouts.most_common())
        raise UsageError(f"--signals {signal.name} needs a {' and a '.join(signal.needs)} in a record: "
                         f"none of the {len(missing)} records ({shown}) has "
                         f"{'them' if len(signal.needs) > 1 else 'one'} "
                         f"({next(iter(missing.values()))}); leave {signal.name} out for this pool")
    return missing


def _applicable_only(compute: Any, missing: dict[str, str], name: str) -> Any:
    """``compute`` over the examples of a shard that the signal fits; the others get null (NaN)
    values and their reason in the ``<name>_na`` column."""
    if not missing:
        return compute

    def wrapped(state: Any, examples: list, bar: Any) -> Any:
        fit = [e for e in examples if e.id not in missing]
        ids = pa.array([e.id for e in examples], pa.string())
        na = pa.array([missing.get(e.id, "") for e in examples], pa.string())
        if not fit:
            bar.update(len(examples))
            return pa.table({"id": ids, f"{name}_na": na})
        part = compute(state, fit, bar)
        bar.update(len(examples) - len(fit))
        where = pc.index_in(ids, value_set=part.column("id"))  # null for the examples left out
        columns = {"id": ids, **{c: part.column(c).take(where) for c in part.column_names if c != "id"}}
        return pa.table({**columns, f"{name}_na": na})

    return wrapped


def run_signal(run: Any, pool: Pool, signal: Signal) -> None:
    """Compute one signal into its stage (resuming it) and store its columns or vectors."""
    if signal.needs_reference and signal.reference is None:
        raise UsageError(f"the {signal.name} signal scores the pool against a reference set: pass "
                         "--reference FILE (reference: in a run config)")
    missing = not_applicable(pool, signal)
    upstream = {**_upstream(run, signal), **signal.prepare(run)}
    fingerprint = signal.fingerprint(pool, upstream)
    if signal.sharded:
        desc = f"{signal.name} [{signal.model}]" if signal.model else signal.name
        table = run_sharded(run, pool, stage_name=signal.name, fingerprint=fingerprint,
                            shard_size=signal.runtime.shard_size, setup=signal.setup,
                            compute=_applicable_only(signal.compute, missing, signal.name),
                            desc=desc, merge=not signal.vectors, backend=make_backend(signal.runtime),
                            device=signal.runtime.device)
        extra = {**signal.stage_info(), **(_not_applicable_entry(signal.name, missing) if missing else {})}
        if extra:
            entry = (run.manifest.get("stages") or {}).get(signal.name) or {}
            run.record_stage(signal.name, {**entry, **extra})
    else:
        table = _run_global(run, pool, signal, fingerprint, missing)
    if signal.vectors:
        _store_vectors(run, signal, table, signal.name)
    if signal.reference_vectors and signal.reference is not None:
        name = f"{signal.name}_reference"
        ref = signal.reference
        table = run_sharded(run, ref, stage_name=name, fingerprint=signal.fingerprint(ref, upstream),
                            shard_size=signal.runtime.shard_size, setup=signal.setup, compute=signal.compute,
                            desc=f"{name} [{signal.model}]", merge=False,
                            backend=make_backend(signal.runtime), device=signal.runtime.device)
        _store_vectors(run, signal, table, name)


def _not_applicable_entry(name: str, missing: dict[str, str]) -> dict[str, Any]:
    """The stage's manifest facts about the examples the signal does not fit (the report shows them)."""
    log.warning("%s: not applicable to %d examples (%s); they get NaN and are left out of selections", name,
                len(missing), "; ".join(f"{n}: {why}" for why, n in Counter(missing.values()).items()))
    return {"not_applicable": {"count": len(missing), "reasons": dict(Counter(missing.values())),
                               "first_ids": list(missing)[:5]}}


def _run_global(run: Any, pool: Pool, signal: Signal, fingerprint: dict[str, Any],
                missing: dict[str, str]) -> Any:
    """A signal computed at once from the vector sets it requires, stored as a single shard. The
    examples it does not fit (``missing``: id -> reason) keep the NaN ``compute_all`` gives them and get
    their reason in the ``<name>_na`` column, as in a sharded signal."""
    stage = run.stage(signal.name, fingerprint)
    t0 = time.perf_counter()
    computed = 0
    if not stage.shard_done(0):
        inputs = {dep: run.read_vectors(dep) for dep in signal.requires if dep in run.vector_sets()}
        # no model pass here, only arithmetic on the stored vectors: 0 forward tokens
        part = signal.compute_all(pool, inputs)
        if missing:
            na = [missing.get(i, "") for i in part.column("id").to_pylist()]
            part = part.append_column(f"{signal.name}_na", pa.array(na, pa.string()))
        stage.write_shard(0, part, info={"forward_tokens": 0})
        computed = 1
    table = stage.read_shards(1)
    if not signal.vectors:
        stage.merge_scores(table)
    elapsed = time.perf_counter() - t0
    stage.mark_complete({"seconds": round(elapsed, 3), "shards_computed": computed, "shards": 1,
                         "examples": table.num_rows, **signal.stage_info(),
                         **(_not_applicable_entry(signal.name, missing) if missing else {})})
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
    for name in config.ordered_signals():  # a signal that fits no record: exit 2 before anything is written
        not_applicable(pool, get_signal(name)(config, runtime, ref))
    with Run.open(out, overwrite=overwrite) as run:
        record_data(run, data, pool, read)
        if ref is not None:
            record_reference(run, reference, ref, read)
        score_pool(run, pool, config, runtime, ref)
    return Path(out)
