"""Read a run folder for the report and ``explain``: scores, embeddings, selections, the pool.

Everything is read, never written, and every array is aligned to one list of ids (those of
``scores.parquet``, in pool order), because files written by different stages are joined by id,
never by row position. Problems that should not stop a report (a selection folder without
``meta.json``, data that moved since the run) become ``notes`` shown on the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from proxysel.data import read_pool
from proxysel.errors import ProxyselError, UsageError
from proxysel.names import check_name
from proxysel.selectors import get_selector
from proxysel.selectors.config import describe_step
from proxysel.store import RunFolder, SelectionRecord
from proxysel.store.run import list_matrix

#: Score columns that are labels or flags, not signals to plot.
NOT_SIGNALS = frozenset({"id", "cluster", "truncated"})


def index_in(ids: pa.Array, other: pa.Array) -> np.ndarray:
    """int64 (len(ids),): the row of each of ``ids`` in ``other``, or -1 where it is absent."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    found = pc.index_in(ids, value_set=other.cast(ids.type))
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) or pa.types.is_integer(t)


@dataclass
class SelectionView:
    """One selection, aligned to the run's ids.

    name:    the selection's name (its folder under ``RUN/selections/``).
    file:    the selected records, as meta.json names them (None when it does not).
    meta:    ``meta.json`` (method, budget, seed, signal, params, parent, chain), or {} when
             missing/unreadable.
    table:   ``selection.parquet`` as read (id, selected, rank, cluster, reason, ...).
    row:     int64 (n,): the row of ``table`` for each run id, -1 where the id is not in it.
    state:   int8 (n,): 1 kept, 0 dropped, -1 not in this selection.
    rank, cluster: int64 (n,), -1 where none.
    """

    name: str
    file: Path | None
    mtime: float
    meta: dict[str, Any]
    table: pa.Table
    row: np.ndarray
    state: np.ndarray
    rank: np.ndarray
    cluster: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def n_kept(self) -> int:
        return int((self.state == 1).sum())

    @property
    def n_rows(self) -> int:
        return self.table.num_rows

    def reason(self, i: int) -> str:
        """The reason string of run row ``i`` (empty if the id is not in the selection)."""
        r = int(self.row[i])
        return "" if r < 0 else str(self.table.column("reason")[r].as_py() or "")

    @property
    def signal(self) -> str | None:
        return selection_signal(self.meta)

    @property
    def chain(self) -> str | None:
        return chain_text(self.meta)


def selection_signal(meta: dict[str, Any]) -> str | None:
    """The score column a selection ranked by: meta ``signal``, else ``params.signal``, else what
    the registered selector of ``method`` reads by default (``lp`` for lp, ...); None if unknown."""
    s = meta.get("signal")
    if isinstance(s, str) and s:
        return s
    params = meta.get("params") if isinstance(meta.get("params"), dict) else {}
    if isinstance(params.get("signal"), str):
        return params["signal"]
    method = meta.get("method")
    if not isinstance(method, str):
        return None
    try:
        selector = get_selector(method)(**params)
    except Exception:  # an unknown method or parameters from another version: no signal, no harm
        return None
    s = getattr(selector, "signal", None)
    return s if isinstance(s, str) and s else None


def chain_text(meta: dict[str, Any]) -> str | None:
    """The steps of a selection made from another one (``--from``), first to last, as one line:
    ``top ppl middle 0.9 (900 kept) -> lp_app 0.3 (300 kept)``; None for a selection from the whole pool.

    Reads meta.json's ``chain`` (the steps ``stages.select`` records, the last being the selection
    itself); a meta.json that names a ``parent`` but holds no readable chain gives ``from PARENT``.
    """
    chain = meta.get("chain")
    steps = [s for s in chain if isinstance(s, dict)] if isinstance(chain, list) else []
    if len(steps) < 2:
        parent = meta.get("parent")
        return f"from {parent}" if isinstance(parent, str) and parent else None
    parts = []
    for step in steps:
        params = step.get("params") if isinstance(step.get("params"), dict) else {}
        what = describe_step(str(step.get("method") or "unknown"), step.get("budget"), params)
        n_kept = step.get("n_kept")
        parts.append(f"{what} ({n_kept:,} kept)" if isinstance(n_kept, int) and not isinstance(n_kept, bool)
                     else what)
    return " -> ".join(parts)


def require_selection(run: RunFolder, name: str, names: list[str]) -> None:
    """UsageError (exit code 2) unless ``name`` is a safe selection name among ``names`` (the run's)."""
    check_name(name, "selection name")
    if name not in names:
        have = ", ".join(names) or "none"
        raise UsageError(f"no selection '{name}' in run folder {run.path} (selections: {have})")


def load_selection(record: SelectionRecord, ids: pa.Array) -> SelectionView:
    """``record`` (``RunFolder.read_selection``) aligned to the run ids ``ids``."""
    table = record.table
    row = index_in(ids, table.column("id").combine_chunks())
    present = row >= 0
    take = np.where(present, row, 0)

    def col(name: str, fill: int) -> np.ndarray:
        values = table.column(name).combine_chunks().fill_null(fill).to_numpy(zero_copy_only=False)
        return np.where(present, values[take], fill) if len(values) else np.full(len(ids), fill)

    selected = col("selected", False).astype(bool)
    state = np.where(present, selected.astype(np.int8), np.int8(-1)).astype(np.int8)
    view = SelectionView(name=record.name, file=record.file, mtime=record.mtime, meta=record.meta,
                         table=table, row=row, state=state, rank=col("rank", -1).astype(np.int64),
                         cluster=col("cluster", -1).astype(np.int64))
    if record.note:
        view.notes.append(record.note)
    extra = table.num_rows - int(present.sum())
    if extra > 0:
        view.notes.append(f"selection '{record.name}' holds {extra:,} ids that are not in scores.parquet")
    return view


@dataclass
class PoolView:
    """What the report takes from the input records, aligned to the run ids.

    source: object (n,) of str or None (the record's ``source`` field); None if no record has one.
    format: object (n,) of str or None (the detected layout).
    examples: id -> Example, for the text previews.
    """

    path: str
    source: np.ndarray | None
    format: np.ndarray
    examples: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _data_path(run: RunFolder, where: str) -> Path:
    """``where`` as given, else (a relative path that is not there) as a path inside the run folder."""
    path = Path(where)
    if path.exists() or path.is_absolute():
        return path
    try:
        inside = run.recorded_path(where, "the input data")
    except ProxyselError:  # it points outside the run: only the path as given counts
        return path
    return inside if inside.exists() else path


def load_pool(run: RunFolder, ids: list[str], data: str | Path | None) -> tuple[PoolView | None, str | None]:
    """Read the run's input records (``manifest["data"]["path"]`` or ``data``), or say why not."""
    manifest = run.manifest
    info = manifest.get("data") if isinstance(manifest.get("data"), dict) else {}
    where = data if data is not None else info.get("path")
    if not where:
        return None, "the manifest names no input data"
    path = _data_path(run, str(where))
    if not path.exists():
        return None, f"the input data is no longer at {where}"
    # Read as the run read it (``select`` records the read_pool options), but never stop the report
    # for a bad record.
    opts = dict(info.get("read_options") or {}) if isinstance(info.get("read_options"), dict) else {}
    opts = {k: v for k, v in opts.items()
            if k in ("format", "columns", "limit", "dedupe", "max_record_bytes")}
    opts["on_bad_record"] = "skip"
    try:
        pool = read_pool(path, **opts)
    except (ProxyselError, TypeError) as err:
        return None, f"cannot read the input data {where}: {err}"
    notes = []
    if data is None and info.get("fingerprint") and pool.fingerprint != info.get("fingerprint"):
        notes.append(f"the input data at {where} changed since the run; records are matched by id")
    by_id = {e.id: e for e in pool.examples}
    found = [by_id.get(i) for i in ids]
    missing = sum(e is None for e in found)
    if missing:
        notes.append(f"{missing:,} scored ids are not in the input data at {where}")
    source = np.array([_source(e) for e in found], dtype=object)
    if not any(s is not None for s in source.tolist()):
        source = None
    fmts = np.array([None if e is None else e.format for e in found], dtype=object)
    return PoolView(path=str(where), source=source, format=fmts, examples=by_id, notes=notes), None


def _source(example: Any) -> str | None:
    if example is None or not isinstance(example.record, dict):
        return None
    s = example.record.get("source")
    if s is None or isinstance(s, (dict, list)):
        return None
    return str(s)


def preview(example: Any, width: int = 220) -> str:
    """One line of an example: the first user turn, then the first assistant turn."""
    if example is None:
        return ""
    user = next((m.content for m in example.messages if m.role in ("user", "text")), "")
    bot = next((m.content for m in example.messages if m.role == "assistant"), "")
    text = " ".join(user.split())
    if bot:
        text = f"{text} → {' '.join(bot.split())}" if text else " ".join(bot.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class RunView:
    """A run folder, read for the report. Every per-row array has one row per ``ids`` entry.

    ids:        pa.StringArray (n,), the ids of scores.parquet (pool order).
    signals:    name -> float64 (n,), every numeric scalar column of scores.parquet but id,
                cluster and truncated (NaN where null).
    lists:      name -> float64 (n, length) for list columns (``ppl_epoch``, ``trajectory``).
    cluster:    int64 (n,) from scores.parquet (-1 where null), or None.
    truncated:  bool (n,), or None.
    source:     object (n,) of str or None: a ``source`` string column of scores.parquet, else the
                records' ``source`` field (when the input records were read), else None.
    embeddings: float32 (n, dim) aligned rows plus a bool (n,) mask of rows that have one; or None.
    selections: (name, mtime) of every selection, oldest first; ``selection``: the one the report shows.
    run:        the run folder, for reading more of it (every selection's meta.json and counts).
    """

    run: RunFolder
    path: Path
    manifest: dict[str, Any]
    ids: pa.Array
    signals: dict[str, np.ndarray]
    lists: dict[str, np.ndarray]
    cluster: np.ndarray | None
    truncated: np.ndarray | None
    source: np.ndarray | None
    embeddings: tuple[np.ndarray, np.ndarray] | None
    embedding_model: str | None
    selections: list[tuple[str, float]]
    selection: SelectionView | None
    pool: PoolView | None
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.ids)


def load_run(path: str | Path, *, selection: str | None = None, data: str | Path | None = None,
             read_data: bool = True) -> RunView:
    """Read everything the report shows from the run folder ``path``.

    selection: the selection folder to show (default: the one written last).
    data:      read the input records from here instead of the manifest's ``data.path``.
    read_data: False skips the input records (no source/format breakdown, no text previews).
    """
    run = RunFolder.at(path)
    manifest = run.manifest
    notes: list[str] = []
    scores = run.read_scores()
    found = run.list_selections()
    if selection is not None:
        require_selection(run, selection, [name for name, _ in found])

    signals: dict[str, np.ndarray] = {}
    lists: dict[str, np.ndarray] = {}
    cluster = truncated = source = None
    if scores is not None:
        ids = scores.column("id").combine_chunks().cast(pa.string())
        for name in scores.column_names:
            col = scores.column(name).combine_chunks()
            if name == "cluster" and pa.types.is_integer(col.type):
                cluster = col.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            elif name == "truncated" and pa.types.is_boolean(col.type):
                truncated = col.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
            elif name == "source" and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                source = np.asarray(col.to_pylist(), dtype=object)
            elif name in NOT_SIGNALS:
                continue
            elif _is_number(col.type):
                signals[name] = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
            elif _is_list(col.type) and _is_number(col.type.value_type):
                lists[name] = list_matrix(col, name, ragged="pad")
    elif found:
        # No signals yet: the rows are those of the newest selection.
        newest = run.read_selection(found[-1][0], columns=["id"]).table
        ids = newest.column("id").combine_chunks().cast(pa.string())
        notes.append("the run has no scores.parquet: no signals to show")
    else:
        ids = pa.array([], pa.string())

    chosen = None
    if found:
        name = selection or found[-1][0]
        try:
            chosen = load_selection(run.read_selection(name), ids)
        except (ProxyselError, OSError, pa.ArrowException) as err:
            if selection:
                raise ProxyselError(f"cannot read selection '{name}': {err}") from err
            notes.append(f"cannot read selection '{name}': {err}")

    embeddings, emb_model = None, None
    record = run.vector_record("embedding")
    if record or "embedding" in run.vector_sets():  # a recorded file that is gone is an error, not "none"
        emb_ids, array = run.read_embeddings()
        emb_model = record.get("model") or None
        row = index_in(ids, pa.array(emb_ids, pa.string()))
        have = row >= 0
        aligned = np.zeros((len(ids), array.shape[1]), dtype=np.float32)
        aligned[have] = array[row[have]]
        embeddings = (aligned, have)

    pool = None
    if read_data and len(ids):
        pool, why = load_pool(run, ids.to_pylist(), data)
        if why:
            notes.append(why)
        elif pool is not None:
            notes.extend(pool.notes)
    elif not read_data:
        notes.append("input records not read (--no-data): no source or format breakdown, no text previews")
    if source is None and pool is not None:
        source = pool.source
    return RunView(run=run, path=run.path, manifest=manifest, ids=ids, signals=signals, lists=lists,
                   cluster=cluster, truncated=truncated, source=source, embeddings=embeddings,
                   embedding_model=emb_model, selections=found, selection=chosen, pool=pool, notes=notes)

