"""The resumable shard loop every sharded stage shares (``proxysel score`` signals, train-proxy passes).

The pool is cut into shards of ``shard_size`` examples in input order; a shard is written with a
completion marker (``store.Stage.write_shard``), so a rerun computes only the shards without one,
on either backend (``proxysel.backends``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from proxysel.backends.local import LocalBackend
from proxysel.data.example import Example, Pool
from proxysel.errors import ProxyselError
from proxysel.progress import Progress

log = logging.getLogger(__name__)


def shards(n: int, shard_size: int) -> list[range]:
    """Row ranges of the shards of a pool of ``n`` examples."""
    return [range(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]


def run_sharded(run: Any, pool: Pool, *, stage_name: str, fingerprint: dict[str, Any], shard_size: int,
                setup: Callable[[str | None], Any], compute: Callable[[Any, list[Example], Any], Any],
                desc: str, merge: bool = True, backend: Any = None, device: str | None = None) -> Any:
    """Compute a per-example stage shard by shard, resumably, and merge it into scores.parquet.

    setup(device) -> state: loads models; called once per worker, only if some shard is left.
    compute(state, examples, bar) -> pa.Table with an ``id`` column and one row per example; it
    reports ``bar.update(n_examples, n_tokens)`` with the tokens its model passes ran, which the
    shard's marker keeps as ``forward_tokens`` (for tokens/s and the bench's compute ledger).
    backend: where the shards are computed (``proxysel.backends``; default local); device: passed
    to ``setup`` (None: the backend's default). Shard planning, writing and merging happen here,
    in the driver, whatever the backend, so the run directory is the same. A shard whose bytes no
    longer match its marker counts as not done (``Stage.shard_done``) and is computed again.
    Returns the stage table.
    """
    backend = backend or LocalBackend()
    stage = run.stage(stage_name, fingerprint)
    # A complete stage opened again keeps its manifest entry until it is marked complete anew: the
    # seconds of the processes that computed its shards carry over (the ledger reads them)
    before = run.manifest["stages"].get(stage_name) or {}
    carried = (float(before.get("seconds_all", before.get("seconds", 0.0))),
               int(before.get("shards_timed", before.get("shards_computed", 0)))) \
        if before.get("status") == "complete" and not stage.overwritten else (0.0, 0)
    parts = shards(len(pool.examples), shard_size)
    todo = [k for k in range(len(parts)) if not stage.shard_done(k)]
    t0 = time.perf_counter()
    tokens = 0
    workers: dict[str, dict[str, Any]] = {}
    if todo:
        jobs = [(k, [pool.examples[i] for i in parts[k]]) for k in todo]
        expected = {k: [e.id for e in examples] for k, examples in jobs}
        with Progress(sum(len(parts[k]) for k in todo), desc=desc) as bar:
            for k, table, worker, shard_tokens in backend.map_shards(jobs, setup=setup, compute=compute,
                                                                     device=device, bar=bar):
                if table.column("id").to_pylist() != expected.pop(k, None):
                    raise ProxyselError(f"stage {stage_name}: shard {k} came back with other ids than were "
                                        "sent")
                tokens += shard_tokens
                # the marker keeps the shard's token count: the ledger sums it over every process
                stage.write_shard(k, table, info={"forward_tokens": int(shard_tokens)})
                workers.setdefault(json.dumps(worker, sort_keys=True), worker)
        if expected:
            raise ProxyselError(f"stage {stage_name}: shards {sorted(expected)[:10]} never came back")
    elapsed = time.perf_counter() - t0
    table = stage.read_shards()
    if merge:
        stage.merge_scores(table)
    # seconds, shards_computed: this process; seconds_all, shards_timed: every process whose shards
    # this stage still holds (an interrupted process marked nothing, so its seconds are not known)
    info = {"seconds": round(elapsed, 3), "shards_computed": len(todo), "shards": len(parts),
            "seconds_all": round(carried[0] + elapsed, 3),
            "shards_timed": min(carried[1] + len(todo), len(parts)),
            "examples": table.num_rows}
    if todo:
        info["backend"] = {**backend.describe(), "workers": list(workers.values())}
    if "truncated" in table.column_names:
        info["truncated"] = int(np.asarray(table.column("truncated")).sum())
    non_finite = count_non_finite(table)
    if non_finite:
        # Flagged here and in the manifest; selectors never pick such rows (selection.parquet says why).
        info["non_finite"] = non_finite
        log.warning("%s: NaN or inf values (truncated examples aside): %s; selections leave such examples "
                    "out",
                    stage_name, ", ".join(f"{k} in {v} examples" for k, v in non_finite.items()))
    if tokens:
        info["tokens_computed"] = tokens
        info["tokens_per_s"] = round(tokens / elapsed, 1) if elapsed > 0 else None
    stage.mark_complete(info)
    log.info("%s: %d examples, %d of %d shards computed in %.1fs", stage_name, table.num_rows, len(todo),
             len(parts), elapsed)
    return table


def count_non_finite(table: Any) -> dict[str, int]:
    """Column -> number of NaN/inf values among the rows not marked ``truncated`` nor not applicable (a
    ``<signal>_na`` reason; float columns only)."""
    keep = np.ones(table.num_rows, dtype=bool)
    if "truncated" in table.column_names:
        keep &= ~np.asarray(table.column("truncated").to_numpy(zero_copy_only=False), dtype=bool)
    for name in table.column_names:
        if name.endswith("_na") and pa.types.is_string(table.column(name).type):
            keep &= np.asarray([not v for v in table.column(name).to_pylist()], dtype=bool)
    out = {}
    for name in table.column_names:
        col = table.column(name)
        if not pa.types.is_floating(col.type):
            continue
        values = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
        bad = ~np.isfinite(values) & keep
        if bad.any():
            out[name] = int(bad.sum())
    return out
