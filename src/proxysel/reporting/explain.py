"""``proxysel explain RUN ID``: every signal of one example and why each selection kept or dropped it.

Read-only: the run folder is not locked, so it works while another stage is running (every file
in a run is replaced atomically, so a reader sees a whole old or a whole new file). The id is
only ever compared with stored ids, never used as a path.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from proxysel.errors import UsageError
from proxysel.reporting.load import chain_text, require_selection, selection_signal
from proxysel.store import RunFolder


def _clean(text: str) -> str:
    """``text`` with control characters shown as escapes, so that no stored string can move the
    cursor or recolour the terminal."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
                   for c in str(text))


def _value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return _clean(str(v))


def _row(table: pa.Table, example_id: str) -> dict[str, Any] | None:
    ids = table.column("id").combine_chunks()
    hit = pc.equal(ids, pa.scalar(example_id, ids.type))
    rows = table.filter(hit.fill_null(False))
    return None if rows.num_rows == 0 else rows.slice(0, 1).to_pylist()[0]


def _group_size(table: pa.Table, cluster: int) -> int:
    """Ranked rows (rank >= 0) sharing ``cluster`` in a selection table."""
    ranked = pc.greater_equal(table.column("rank"), 0)
    same = pc.equal(table.column("cluster"), cluster)
    return int(pc.sum(pc.and_(ranked, same).cast(pa.int64())).as_py() or 0)


def explain(run_dir: str | Path, example_id: str, selection: str | None = None) -> str:
    """The signals of example ``example_id`` and, for every selection (or the one named), whether it
    was kept, its rank and cluster and the selector's ``reason`` string, as printable text.

    Raises UsageError (exit code 2) when the id is in neither scores.parquet nor any selection,
    or when ``selection`` names no selection of the run.

    >>> print(explain("runs/r1", "ex0007"))  # doctest: +SKIP
    """
    run = RunFolder.at(run_dir)
    path = run.path
    example_id = str(example_id)
    found = sorted(name for name, _ in run.list_selections())
    if selection is not None:
        require_selection(run, selection, found)
        found = [selection]

    scores = run.read_scores()
    signals = _row(scores, example_id) if scores is not None else None
    per_selection = []
    for name in found:
        record = run.read_selection(name)
        per_selection.append((record, _row(record.table, example_id)))
    if signals is None and not any(r is not None for _, r in per_selection):
        looked = ["scores.parquet"] if scores is not None else []
        looked += [f"selection '{record.name}'" for record, _ in per_selection]
        raise UsageError(f"no example with id {_clean(repr(example_id))} in run {path} "
                         f"(looked in {', '.join(looked) or 'nothing: the run has no scores or selections'})")

    lines = [f"example {_clean(repr(example_id))} in run {path}", ""]
    if signals is None:
        lines.append("signals: none stored for this id" if scores is not None
                     else "signals: the run has no scores.parquet")
    else:
        lines.append("signals (scores.parquet):")
        width = max(len(k) for k in signals)
        for key, value in signals.items():
            if key != "id":
                lines.append(f"  {_clean(key):<{width}}  {_value(value)}")
    if not per_selection:
        lines += ["", "selections: none in this run"]
    for record, row in per_selection:
        meta, table = record.meta, record.table
        info = {"method": meta.get("method"), "signal": selection_signal(meta), "budget": meta.get("budget"),
                "seed": meta.get("seed")}
        about = [f"{k} {_value(v)}" for k, v in info.items() if v is not None]
        about_text = f" ({', '.join(about)})" if about else ""
        lines += ["", f"selection '{_clean(record.name)}'{about_text}:"]
        chain = chain_text(meta)
        if chain:
            lines.append(f"  chain    {_clean(chain)}")
        if record.note:
            lines.append(f"  note     {_clean(record.note)}")
        if row is None:
            lines.append("  not in this selection")
            continue
        rank, cluster = row.get("rank"), row.get("cluster")
        rank = -1 if rank is None else int(rank)
        cluster = -1 if cluster is None else int(cluster)
        kept = "kept" if row.get("selected") else "dropped"
        if rank >= 0:
            where = f"rank {rank:,} of {_group_size(table, cluster):,}" + (
                f" in cluster {cluster}" if cluster >= 0 else "")
        else:
            where = "no rank" + (f", cluster {cluster}" if cluster >= 0 else "")
        lines.append(f"  {kept:<8} {where}")
        if row.get("count") is not None:
            lines.append(f"  count    {_value(row['count'])}")
        lines.append(f"  reason   {_clean(row.get('reason') or '')}")
    return "\n".join(lines) + "\n"
