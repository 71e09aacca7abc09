"""Write a selection back in the input's own layout, with every record untouched.

The selected records are written from the bytes they had in the input (``Example.raw``), not
re-serialised, so a selected ``.jsonl`` line is byte-for-byte the input line.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from proxysel.data.example import Example
from proxysel.data.formats import canonical_json
from proxysel.data.readers import file_kind, read_table
from proxysel.store.atomic import atomic_write_bytes, atomic_write_parquet

_TABLE_KINDS = {"parquet", "arrow"}


def write_selected(examples: Iterable[Example], out_dir: str | Path, stem: str = "selected") -> Path:
    """Write ``examples`` (in the order given: pass them in input order) to ``out_dir``; return the path.

    ======================  =====================================================================
    input                   output
    ======================  =====================================================================
    ``.jsonl``              ``<stem>.jsonl``: each record's raw bytes + ``\\n`` (CRLF input gives
                            LF lines; a BOM is not written)
    ``.jsonl.gz``           ``<stem>.jsonl.gz``: the same lines, gzip with mtime 0 (deterministic)
    ``.json``               ``<stem>.json``: ``[\\n`` + raw elements joined by ``,\\n`` + ``\\n]\\n``
    parquet / datasets      ``<stem>.parquet``: the selected rows taken from the source tables,
                            same schema (files with different schemas are unified permissively)
    a mix of the above      ``<stem>.jsonl``: raw bytes per line, table rows as canonical JSON;
                            line breaks between tokens of a pretty-printed ``.json`` element are
                            removed (a raw line break cannot occur inside a JSON string, so the
                            record's values are unchanged)
    ======================  =====================================================================

    Also ``<stem>.jsonl`` when ``examples`` is empty, or when tables with incompatible schemas are
    mixed. The file is written atomically (temp file in ``out_dir``, fsync, rename).

    >>> write_selected([pool.examples[i] for i in sorted(keep)], "runs/r1/selections/topk")  # doctest: +SKIP
    PosixPath('runs/r1/selections/topk/selected.jsonl')
    """
    # store's package imports pyarrow and numpy; keep `import proxysel.data` light.

    examples = list(examples)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kinds = {file_kind(e.file) for e in examples}
    if None in kinds:
        bad = next(e for e in examples if file_kind(e.file) is None)
        raise ValueError(f"example {bad.id!r} comes from {bad.file!r}, which is not a data file")
    if kinds == {"jsonl.gz"}:
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
            gz.write(_lines(examples))
        return atomic_write_bytes(out / f"{stem}.jsonl.gz", buf.getvalue())
    if kinds == {"json"}:
        body = b",\n".join(_raw(e) for e in examples)
        return atomic_write_bytes(out / f"{stem}.json", b"[\n" + body + b"\n]\n")
    if kinds and kinds <= _TABLE_KINDS:
        table = _take_rows(examples)
        if table is not None:
            return atomic_write_parquet(out / f"{stem}.parquet", table)
    return atomic_write_bytes(out / f"{stem}.jsonl", _lines(examples))


def _raw(e: Example) -> bytes:
    if e.raw is None:
        raise ValueError(f"example {e.id!r} from {e.file} has no raw bytes")
    return e.raw


def _lines(examples: list[Example]) -> bytes:
    parts = []
    for e in examples:
        if e.raw is None:
            parts.append(canonical_json(e.record))
        elif file_kind(e.file) == "json" and (b"\n" in e.raw or b"\r" in e.raw):
            parts.append(e.raw.replace(b"\r", b"").replace(b"\n", b""))
        else:
            parts.append(e.raw)
    return b"".join(p + b"\n" for p in parts)


def _take_rows(examples: list[Example]):
    """The selected rows as one table, or None if the source schemas cannot be unified."""
    runs: list[tuple[str, list[int]]] = []  # consecutive examples of one file
    for e in examples:
        if runs and runs[-1][0] == e.file:
            runs[-1][1].append(e.index)
        else:
            runs.append((e.file, [e.index]))
    cache: dict[str, pa.Table] = {}
    parts = []
    for file, rows in runs:
        if file not in cache:
            cache[file] = read_table(file)
        parts.append(cache[file].take(pa.array(rows, type=pa.int64())))
    if len(parts) == 1:
        return parts[0]
    try:
        return pa.concat_tables(parts, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
