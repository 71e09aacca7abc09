"""``proxysel select``: run a registered selector over a run's scores and write the subset.

RUN/selections/NAME/ (written by ``store.Run.write_selection``):
  selected.<ext>       the selected input records, verbatim, in input order
  selection.parquet    id, selected, rank, cluster, reason (+ count with replacement)
  meta.json            method, parameters, budget, seed, counts, notes, data fingerprint, chain

A chain (``SelectConfig.parent``, ``--from NAME``) selects from another selection's kept set: the
budget stays a fraction of the whole pool, and every row the parent dropped keeps the reason of
the step that dropped it ("dropped at step 1 (top ppl middle 0.9)").
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from proxysel.data import write_selected
from proxysel.data.example import Pool
from proxysel.errors import RunConflictError, UsageError
from proxysel.selectors.base import ScoreTable, Selection, resolve_budget
from proxysel.selectors.config import SelectConfig, describe_step
from proxysel.signals import derivable, producer_of
from proxysel.stages.inputs import read_run_pool
from proxysel.store import Run

log = logging.getLogger(__name__)

__all__ = ["build_table", "select_run"]

#: meta.json keys that say what a selection is (a rerun with other values is refused without overwrite)
IDENTITY = ("method", "params", "budget", "seed", "stratify", "parent", "data_fingerprint")


def same_selection(old: dict[str, Any], new: dict[str, Any], selector: Any) -> bool:
    """Whether a saved selection's meta ``old`` describes the selection ``new`` would write.

    A parameter that ``old`` lacks and ``new`` holds at its default is ignored: it was added to the
    selector after ``old`` was written, and its default selects what the older version did (so an
    upgrade does not turn every saved selection into a conflict).
    """
    defaults = selector.param_defaults()
    old_params, new_params = old.get("params"), new.get("params")
    if isinstance(old_params, dict) and isinstance(new_params, dict):
        new_params = {k: v for k, v in new_params.items()
                      if k in old_params or k not in defaults or v != defaults[k]}
    return ({k: old.get(k) for k in IDENTITY}
            == {**{k: new.get(k) for k in IDENTITY}, "params": new_params})


def missing_column_error(run: Any, column: str, method: str) -> UsageError:
    """The error for a column the run lacks, naming the command that makes it (from the signal registry)."""
    producer = producer_of(column)
    data = str((run.manifest.get("data") or {}).get("path") or "DATA")
    if producer is None:
        how = f"a stage that writes the column '{column}'"
    else:
        how = f"{producer.command}: {producer.how_to_make(data=data, run=str(run.path))}"
    return UsageError(f"{method} reads '{column}', which run folder {run.path} does not hold; "
                      f"{method} needs {how}")


def build_table(run: Any, pool: Pool, reads: tuple[str, ...], stratify: str | None = None,
                reference: Pool | None = None, method: str = "select") -> ScoreTable:
    """The run's scores as a ScoreTable in pool order, with the vector sets and record field it reads."""
    scores = run.read_scores()
    vector_sets = set(run.vector_sets())
    if scores is None:
        if not vector_sets or any(c not in vector_sets for c in reads):
            raise UsageError(f"run folder {run.path} has no scores; run `proxysel score` or "
                             "`proxysel train-proxy` into it first")
        # a selector that reads only vector sets (cluster_random over the embeddings) needs no
        # score column: the rows are the pool's
        scores = pa.table({"id": pa.array([e.id for e in pool.examples], pa.string())})
    scores = _with_derived_columns(scores, reads, method)
    for column in reads:
        if column not in scores.column_names and column not in vector_sets:
            raise missing_column_error(run, column, method)
    table = ScoreTable.from_arrow(scores)
    pos = {i: k for k, i in enumerate(table.ids)}
    missing = [e.id for e in pool.examples if e.id not in pos]
    if missing:
        raise UsageError(f"{len(missing)} examples of the input have no scores (first: {missing[:3]}); "
                         "rerun the scoring stage")
    table = table.take(np.asarray([pos[e.id] for e in pool.examples], dtype=np.int64))
    for name in reads:
        if name in vector_sets and name not in table.columns:
            table.columns[name] = _aligned_vectors(run, name, [e.id for e in pool.examples])
    for column in reads:  # why a signal does not apply to some rows (signals.base.Signal.needs)
        producer = producer_of(column)
        na = f"{producer.name}_na" if producer is not None else None
        if na in table.columns:
            table.na_reason[column] = np.asarray([v or "" for v in table.columns[na]], dtype=object)
    if stratify == "auto":  # s2l: by source when every record has one
        if all(isinstance(e.record, dict) and e.record.get("source") is not None for e in pool.examples):
            table.columns["source"] = _record_field(pool, "source")
    elif stratify:
        table.columns[stratify] = _record_field(pool, stratify)
    if reference is not None:  # the vector sets read that the reference was embedded into too
        table.reference = _reference_table(run, reference, [r for r in reads if r in vector_sets
                                                            and f"{r}_reference" in vector_sets])
    return table


def _with_derived_columns(scores: pa.Table, reads: tuple[str, ...], method: str) -> pa.Table:
    """``scores`` with the columns of ``reads`` it lacks but a signal derives from one it holds
    (``Signal.derives``: ``ppl_5`` or ``lp_app_2`` from ``ppl_epoch``)."""
    for column in reads:
        if column not in scores.column_names and derivable(column, scores.column_names):
            try:
                values = producer_of(column).derive(column, scores)
            except ValueError as e:
                raise UsageError(f"{method} reads {e}") from None
            scores = scores.append_column(column, pa.array(values, pa.float64()))
    return scores


def _aligned_vectors(run: Any, name: str, ids: list[str]) -> np.ndarray:
    vec_ids, vecs = run.read_vectors(name)
    at = {i: k for k, i in enumerate(vec_ids)}
    try:
        return vecs[np.asarray([at[i] for i in ids], dtype=np.int64)]
    except KeyError as e:
        raise UsageError(f"example {e.args[0]!r} has no '{name}' vector; rerun "
                         f"`proxysel score DATA --signals {name} --out {run.path}`") from None


def _record_field(pool: Pool, field_name: str) -> np.ndarray:
    values = []
    for e in pool.examples:
        v = e.record.get(field_name) if isinstance(e.record, dict) else None
        if v is None:
            raise UsageError(f"--stratify {field_name}: {e.file}:{e.line} has no field '{field_name}'")
        values.append(str(v))
    return np.asarray(values, dtype=object)


def _reference_table(run: Any, reference: Pool, vector_sets: list[str]) -> ScoreTable:
    """The reference set's table: its stored vectors (``<set>_reference``) and a ``group`` column (the
    record's ``group``, ``family``, ``category`` or ``source`` field, else one group)."""
    ids = [e.id for e in reference.examples]
    columns: dict[str, Any] = {}
    for name in vector_sets:
        columns[name] = _aligned_vectors(run, f"{name}_reference", ids)
    columns["group"] = np.asarray([reference_group(e) for e in reference.examples], dtype=object)
    return ScoreTable(ids=ids, columns=columns)


#: record fields that name a reference example's group (task), in order of preference
GROUP_FIELDS = ("group", "family", "category", "source", "task")


def reference_group(example: Any) -> str:
    rec = example.record if isinstance(example.record, dict) else {}
    for f in GROUP_FIELDS:
        if rec.get(f) is not None:
            return str(rec[f])
    return "all"


def _chain(run: Any, config: SelectConfig) -> tuple[list[dict[str, Any]], list[str] | None, dict[str, str]]:
    """(the parent's chain steps, the parent's kept ids, the reason of every row the chain dropped)."""
    if config.parent is None:
        return [], None, {}
    if not run.has_selection(config.parent):
        raise UsageError(f"--from {config.parent}: run folder {run.path} has no selection '{config.parent}' "
                         f"(selections: {', '.join(run.selections()) or 'none'})")
    parent = run.read_selection(config.parent)
    steps = list(parent.meta.get("chain") or [])
    step = {"name": config.parent, "method": parent.meta.get("method"), "budget": parent.meta.get("budget"),
            "params": parent.meta.get("params") or {}, "n_kept": len(parent.selected_ids)}
    if not steps or steps[-1].get("name") != config.parent:  # a parent's own chain ends with the parent
        steps.append(step)
    if any(s.get("name") == config.name for s in steps):
        raise UsageError(f"--from {config.parent}: selection '{config.name}' is itself a step of "
                         f"'{config.parent}' ({' -> '.join(s['name'] for s in steps)}): a cycle")
    number = len(steps)
    what = describe_step(str(step["method"]), step["budget"], step["params"])
    dropped = {}
    for i, kept, reason in zip(parent.table.column("id").to_pylist(),
                               parent.table.column("selected").to_pylist(),
                               parent.table.column("reason").to_pylist()):
        if not kept:
            already = str(reason or "")
            dropped[i] = (already if already.startswith("dropped at step")
                          else f"dropped at step {number} ({what})")
    return steps, parent.selected_ids, dropped


def select_run(run_dir: str | Path, config: SelectConfig, *, data: str | Path | None = None,
               reference: str | Path | None = None, overwrite: bool = False) -> Path:
    """Select from ``run_dir``'s scores as ``config`` says and write the subset; returns
    RUN/selections/NAME."""
    selector = config.selector()
    with Run.open(run_dir, create=False) as run:
        pool = read_run_pool(run, data)
        ref = read_run_pool(run, reference, key="reference") if selector.needs_reference else None
        steps, parent_ids, dropped = _chain(run, config)
        table = build_table(run, pool, selector.reads(), selector.stratify_field(), ref, config.method)
        try:
            if parent_ids is None:
                sel = selector.select(table, config.budget, seed=config.seed)
            else:
                k = resolve_budget(config.budget, table.n)  # a fraction of the whole pool, also in a chain
                keep = set(parent_ids)
                rows = np.asarray([i for i, x in enumerate(table.ids) if x in keep], dtype=np.int64)
                if k > len(rows):
                    if getattr(selector, "on_short", "error") != "keep":
                        raise UsageError(f"budget {k} is larger than the {len(rows)} examples "
                                         f"'{config.parent}' kept")
                    k = len(rows)  # on_short: keep (a threshold filter): all that pass, at most these
                sel = _widen(selector.select(table.take(rows), k, seed=config.seed), table, rows, dropped)
        except ValueError as e:
            raise UsageError(f"selector {config.method}: {e}") from None
        excluded: dict[str, int] = {}
        for why in sel.reason:
            if why.startswith("excluded"):
                excluded[why] = excluded.get(why, 0) + 1
        params = sel.params
        meta = {"method": config.method, "params": params, "budget": config.budget,
                "budget_resolved": sel.budget, "seed": config.seed, "stratify": selector.stratify_field(),
                "parent": config.parent,
                "n_pool": table.n, "n_selected": sel.n_selected, "notes": sel.notes,
                "excluded": dict(sorted(excluded.items())), "data_fingerprint": pool.fingerprint,
                "chain": steps + [{"name": config.name, "method": config.method, "budget": config.budget,
                                   "params": params, "n_kept": sel.n_selected}]}
        if ref is not None:
            meta["reference_fingerprint"] = ref.fingerprint
        old, _ = run.read_selection_meta(config.name)
        if old and not overwrite and not same_selection(old, meta, selector):
            raise RunConflictError(f"selection '{config.name}' exists with other parameters "
                                   f"({old.get('method')}, budget {old.get('budget')}, "
                                   f"seed {old.get('seed')}); pass --name for a new one or --overwrite to "
                                   "replace it")
        chosen = [e for e, s in zip(pool.examples, sel.selected) if s]
        out = run.write_selection(config.name, sel.to_arrow(), meta,
                                  lambda folder: write_selected(chosen, folder, stem="selected"))
        run.record_stage(f"select:{config.name}", {"method": config.method, "n_selected": sel.n_selected})
    for note in sel.notes:
        log.info("%s: %s", config.name, note)
    for why, n in sorted(excluded.items()):
        log.warning("%s: %d of %d examples could not be selected (%s)", config.name, n, table.n, why)
    return out


def _widen(sub: Selection, table: ScoreTable, rows: np.ndarray, dropped: dict[str, str]) -> Selection:
    """A selection over ``rows`` of ``table`` as one over the whole table: the rest keep the chain's
    reason."""
    n = table.n
    selected = np.zeros(n, dtype=bool)
    rank = np.full(n, -1, dtype=np.int64)
    cluster = np.full(n, -1, dtype=np.int64)
    reason = [dropped.get(i, "dropped by an earlier step") for i in table.ids]
    selected[rows], rank[rows], cluster[rows] = sub.selected, sub.rank, sub.cluster
    for j, r in enumerate(rows.tolist()):
        reason[r] = sub.reason[j]
    count = None
    if sub.count is not None:
        count = np.zeros(n, dtype=np.int64)
        count[rows] = sub.count
    return Selection(ids=list(table.ids), selected=selected, rank=rank, cluster=cluster, reason=reason,
                     method=sub.method, params=sub.params, budget=sub.budget, count=count, notes=sub.notes)
