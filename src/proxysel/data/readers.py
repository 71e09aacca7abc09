"""Read a pool: files -> records (with their exact bytes) -> Examples, reporting every bad record.

Reading is the first step of every command, so a bad input stops the run here (exit code 2)
before any model is loaded, unless the caller asked to skip bad records.

Byte offsets and lines: offsets are 0-based bytes of the file (of the decompressed stream for
``.jsonl.gz``); lines are 1-based and count every physical line, blank ones included.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from proxysel.data.example import Example, Pool, SkippedRecord
from proxysel.data.formats import (
    RecordProblem,
    _kind,
    blank,
    canonical_json,
    check_columns,
    check_format,
    detect,
    find_lone_surrogate,
    record_id,
    rename,
    to_messages,
)
from proxysel.errors import BadInputError, UsageError

#: Default cap on one record's size in bytes (``max_record_bytes``).
DEFAULT_MAX_RECORD_BYTES = 16 * 2**20
#: Bytes read at a time from a ``.json`` array.
CHUNK_BYTES = 1 << 20
#: File kinds by suffix; ``arrow`` only inside a ``datasets`` ``save_to_disk`` folder.
SUFFIXES = ((".jsonl.gz", "jsonl.gz"), (".jsonl", "jsonl"), (".json", "json"), (".parquet", "parquet"),
            (".arrow", "arrow"))
#: Suffixes of data files proxysel cannot read; finding one in a directory is an error rather than
#: leaving its records out without a word.
UNSUPPORTED_SUFFIXES = (".csv", ".tsv", ".gz", ".zst", ".bz2", ".xz", ".zip", ".arrow", ".feather",
                        ".ndjson")
ON_BAD_RECORD = ("error", "skip")

_BOM = b"\xef\xbb\xbf"
_WS = re.compile(r"[ \t\n\r]*")
#: A ``\\udXXX`` escape in JSON text: the record may hold a lone surrogate (checked on the decoded
#: value; properly paired escapes such as emoji are fine).
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
#: Invalid UTF-8 bytes, as ``surrogateescape`` decoding smuggles them into ``.json`` text.
_SMUGGLED_BYTE = re.compile("[\udc80-\udcff]")
_SKIP_HINT = "on_bad_record='skip' (--on-bad-record skip)"


@dataclass
class RawRecord:
    """One record as found in a file, before normalisation. ``problem`` set: it is bad;
    ``fatal``: nothing after it in that file can be read."""

    file: str
    line: int | None
    offset: int | None
    index: int
    raw: bytes | None = None
    value: Any = None
    canonical: bytes | None = None
    problem: RecordProblem | None = None
    fatal: bool = False


def read_pool(path: str | Path, *, format: str | None = None, columns: Mapping[str, str] | None = None,
              on_bad_record: str = "error", limit: int | None = None, dedupe: bool = False,
              max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Pool:
    """Read every record of ``path`` into a Pool of normalised Examples, in input order.

    path:           ``.jsonl``, ``.jsonl.gz``, ``.json`` (one JSON array, read incrementally),
                    ``.parquet``, a Hugging Face ``datasets.save_to_disk`` folder, or a folder of
                    those (files sorted by name at each level, recursively; hidden entries ignored).
    format:         force one layout of FORMATS; None detects it per record (see ``formats``).
    columns:        logical field -> the record's key, applied before detection, e.g.
                    ``{"instruction": "question", "output": "answer"}``.
    on_bad_record:  ``"error"`` raises BadInputError (exit code 2) at the first bad record;
                    ``"skip"`` lists it in ``Pool.skipped`` and goes on (an empty file counts as
                    one bad record). Duplicate ids, unreadable inputs (missing path, no data
                    files, truncated or corrupt ``.gz`` / Parquet) and an input with no usable
                    record raise BadInputError in both modes.
    limit:          stop after this many good examples (reads only as much of the input as needed).
    dedupe:         keep the first record of each id; later ones go to ``Pool.skipped``.
    max_record_bytes: larger records are bad records.

    Ids are the record's ``id`` or a content hash (``formats.record_id``); ``Example.raw`` holds the
    record's exact bytes: the ``.jsonl`` line without ``\\n`` / ``\\r\\n`` (and without the UTF-8
    BOM of line 1), or the exact slice of a ``.json`` array element; None for table rows.

    >>> pool = read_pool("data/alpaca.jsonl", on_bad_record="skip")  # doctest: +SKIP
    >>> pool.examples[0].messages[0].role
    'user'
    """
    fmt = check_format(format)
    cols = check_columns(columns)
    if on_bad_record not in ON_BAD_RECORD:
        raise UsageError(f"on_bad_record must be one of {', '.join(ON_BAD_RECORD)}, got {on_bad_record!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UsageError(f"limit must be a count >= 1 or None, got {limit!r}")
    if isinstance(max_record_bytes, bool) or not isinstance(max_record_bytes, int) or max_record_bytes < 1:
        raise UsageError(f"max_record_bytes must be a positive integer, got {max_record_bytes!r}")

    root = Path(path)
    files = discover(root)
    examples: list[Example] = []
    skipped: list[SkippedRecord] = []
    first_of: dict[str, Example] = {}
    duplicates: list[tuple[Example, Example]] = []
    digest = hashlib.sha256()
    read: list[str] = []

    def bad(file: str, line: int | None, offset: int | None, field: str | None, message: str) -> None:
        if on_bad_record == "error":
            if _SKIP_HINT not in message:  # say what to do: fix it, or skip such records
                message += (f". Fix the record, or pass {_SKIP_HINT} to skip bad records "
                            "(listed in the manifest)")
            raise BadInputError(file, message, line=line, field=field, offset=offset)
        skipped.append(SkippedRecord(file=file, line=line, offset=offset, field=field, reason=message))

    full = False
    for file, kind in files:
        label = str(file)
        read.append(label)
        count = 0
        records = iter_records(file, kind, label, max_record_bytes)
        try:
            for item in records:
                count += 1
                problem = item.problem
                if problem is None:
                    try:
                        example = _to_example(item, fmt, cols)
                    except RecordProblem as p:
                        problem = p
                if problem is not None:
                    offset = problem.offset if problem.offset is not None else item.offset
                    bad(item.file, item.line, offset, problem.field, problem.message)
                    continue
                first = first_of.get(example.id)
                if first is not None:
                    if dedupe:
                        skipped.append(SkippedRecord(
                            file=example.file, line=example.line, offset=item.offset, field="id",
                            reason=f"duplicate id {example.id!r} (kept the first, at "
                                   f"{first.file}:{first.line})"))
                    else:
                        duplicates.append((first, example))
                    continue
                first_of[example.id] = example
                examples.append(example)
                content = item.raw if item.raw is not None else item.canonical
                assert content is not None
                # NUL cannot occur in ids or in JSON text, so it separates the parts unambiguously.
                digest.update(example.id.encode("utf-8") + b"\x00" + content + b"\x00")
                if limit is not None and len(examples) >= limit:
                    full = True
                    break
        finally:
            records.close()
        if count == 0:
            bad(label, None, None, None, "file is empty (no records)")
        if full:
            break

    if duplicates:
        shown = "; ".join(f"{b.id!r} at {a.file}:{a.line} and {b.file}:{b.line}" for a, b in duplicates[:5])
        more = f" (and {len(duplicates) - 5} more)" if len(duplicates) > 5 else ""
        a, b = duplicates[0]
        raise BadInputError(b.file, f"{len(duplicates)} duplicate id(s): {shown}{more}. Scores are keyed "
                            "by id, so ids must be unique: fix the ids, or pass dedupe=True (--dedupe) "
                            "to keep the first record of each id", line=b.line, field="id")
    if not examples:
        first_skip = (f"; the first: {skipped[0].file}:{skipped[0].line}: {skipped[0].reason}"
                      if skipped else "")
        raise BadInputError(str(root), f"no usable records ({len(skipped)} skipped{first_skip})")
    if fmt or cols:
        # The same bytes read with another layout or field mapping are other examples.
        digest.update(canonical_json({"format": fmt, "columns": cols}))
    return Pool(examples=examples, skipped=skipped, paths=read, fingerprint=digest.hexdigest())


# --- finding files -------------------------------------------------------------------------------

def file_kind(path: str | Path) -> str | None:
    """``jsonl``, ``jsonl.gz``, ``json``, ``parquet``, ``arrow`` from the file name, else None."""
    name = Path(path).name.lower()
    for suffix, kind in SUFFIXES:
        if name.endswith(suffix):
            return kind
    return None


def is_hf_dataset(folder: Path) -> bool:
    """A folder written by ``datasets.Dataset.save_to_disk``."""
    return (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()


def discover(root: Path) -> list[tuple[Path, str]]:
    """The data files of ``root`` with their kinds, in reading order; BadInputError if none."""
    if not root.exists():
        raise BadInputError(str(root), "no such file or directory")
    if root.is_file():
        kind = file_kind(root)
        if kind is None or kind == "arrow":
            raise BadInputError(str(root), "unsupported file type; give a .jsonl, .jsonl.gz, .json or "
                                ".parquet file, or a folder of them or a datasets save_to_disk folder")
        return [(root, kind)]
    files = _walk(root)
    if not files:
        raise BadInputError(str(root), "no data files in this directory (.jsonl, .jsonl.gz, .json, "
                            ".parquet, or a datasets save_to_disk folder)")
    return files


def _walk(folder: Path) -> list[tuple[Path, str]]:
    if is_hf_dataset(folder):
        return [(f, "arrow") for f in _hf_data_files(folder)]
    if (folder / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in folder.iterdir() if p.is_dir() and is_hf_dataset(p))
        raise BadInputError(str(folder), "is a datasets DatasetDict with splits "
                                         f"{', '.join(splits) or '(none)'}; give one split's folder, e.g. "
                                         f"{folder / (splits[0] if splits else 'train')}")
    out: list[tuple[Path, str]] = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            out.extend(_walk(entry))
            continue
        kind = file_kind(entry)
        if kind is not None and kind != "arrow":
            out.append((entry, kind))
        elif entry.name.lower().endswith(UNSUPPORTED_SUFFIXES):
            raise BadInputError(str(entry), "unsupported data file in the input folder; convert it to "
                                ".jsonl or .parquet, or move it out of the folder")
    return out


def _hf_data_files(folder: Path) -> list[Path]:
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        names = [entry["filename"] for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInputError(str(folder / "state.json"), f"not a readable datasets state file ({e})") from None
    if state.get("_indices_data_files"):
        raise BadInputError(str(folder), "this datasets folder holds an indices mapping; save it again "
                            "after dataset.flatten_indices()")
    files = [folder / name for name in names]
    for f in files:
        if not f.is_file():
            raise BadInputError(str(f), "listed in state.json but missing")
    if not files:
        raise BadInputError(str(folder), "datasets folder lists no data files in state.json")
    return files


# --- records of one file -------------------------------------------------------------------------

def iter_records(file: Path, kind: str, label: str | None = None,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawRecord]:
    """The records of one data file, in order, bad ones included (``problem`` set)."""
    label = label or str(file)
    if kind in ("jsonl", "jsonl.gz"):
        return _iter_jsonl(file, label, kind == "jsonl.gz", max_record_bytes)
    if kind == "json":
        return iter_json_array(file, label, max_record_bytes)
    if kind in ("parquet", "arrow"):
        return _iter_table(file, label, kind, max_record_bytes)
    raise ValueError(f"unknown file kind {kind!r}")


def _iter_jsonl(file: Path, label: str, gz: bool, max_bytes: int) -> Iterator[RawRecord]:
    try:
        with (gzip.open(file, "rb") if gz else open(file, "rb")) as fh:
            yield from _jsonl_records(fh, label, max_bytes)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise BadInputError(label, f"the gzip stream is truncated or corrupt ({e}); re-download or "
                            "re-compress the file") from None
    except OSError as e:
        raise BadInputError(label, f"cannot read the file: {e.strerror or e}") from None


def _jsonl_records(fh, label: str, max_bytes: int) -> Iterator[RawRecord]:
    decoder = json.JSONDecoder()
    cap = max_bytes + 2  # the record plus "\r\n"
    offset = 0
    line_no = 0
    index = 0
    while True:
        line = fh.readline(cap)
        if not line:
            return
        line_no += 1
        start = offset
        if len(line) == cap and not line.endswith(b"\n"):
            # Over the cap: consume the rest of the line without holding it in memory.
            size = len(line)
            while not line.endswith(b"\n"):
                line = fh.readline(CHUNK_BYTES)
                if not line:
                    break
                size += len(line)
            offset += size
            ending = 2 if line.endswith(b"\r\n") else 1 if line.endswith(b"\n") else 0
            yield RawRecord(label, line_no, start, index, problem=RecordProblem(
                f"record is over max_record_bytes ({max_bytes}): the line has {size - ending} bytes"))
            index += 1
            continue
        offset += len(line)
        if line_no == 1 and line.startswith(_BOM):
            line, start = line[3:], start + 3
        body = line[:-1] if line.endswith(b"\n") else line
        if body.endswith(b"\r"):
            body = body[:-1]
        if blank(body):
            continue  # a blank line holds no record
        item = RawRecord(label, line_no, start, index, raw=body)
        index += 1
        if len(body) > max_bytes:
            item.problem = RecordProblem(f"record is over max_record_bytes ({max_bytes}): {len(body)} bytes")
            yield item
            continue
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            item.problem = RecordProblem(
                f"invalid UTF-8 (byte 0x{body[e.start]:02x}) at byte {start + e.start}; re-encode the file "
                "as UTF-8", offset=start + e.start)
            yield item
            continue
        try:
            item.value = decoder.decode(text)
        except json.JSONDecodeError as e:
            item.problem = RecordProblem(f"malformed JSON at column {e.colno}: {e.msg}")
            yield item
            continue
        item.problem = _surrogate_problem(body, item.value)
        yield item


def _surrogate_problem(raw: bytes, value: Any) -> RecordProblem | None:
    if (b"\\ud" not in raw and b"\\uD" not in raw) or not _ESCAPED_SURROGATE.search(raw):
        return None
    where = find_lone_surrogate(value)
    if where is None:
        return None
    return RecordProblem(f"{where} holds an unpaired UTF-16 surrogate (a \\ud800-\\udfff escape without "
                         "its pair), which cannot be encoded as UTF-8; fix or remove the character", where)


def iter_json_array(file: Path, label: str | None = None, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                    chunk_bytes: int = CHUNK_BYTES) -> Iterator[RawRecord]:
    """The elements of a file holding one JSON array, read ``chunk_bytes`` at a time.

    Each element is decoded with ``json.JSONDecoder.raw_decode``; its ``raw`` is the exact byte slice
    of the element. Invalid UTF-8 is decoded with ``surrogateescape`` so that it can be reported
    per record with its byte offset. A malformed or cut-off element ends the file: the elements
    after it cannot be located, so it is yielded as one ``fatal`` problem at the element's start.
    """
    label = label or str(file)
    try:
        with open(file, "rb") as fh:
            yield from _JsonArray(fh, label, max_record_bytes, chunk_bytes).records()
    except OSError as e:
        raise BadInputError(label, f"cannot read the file: {e.strerror or e}") from None


class _TooBig(Exception):
    pass


def _incomplete_tail(data: bytes) -> int:
    """How many bytes at the end of ``data`` start a UTF-8 sequence that the next chunk completes."""
    for i in range(1, min(4, len(data)) + 1):
        b = data[-i]
        if b < 0x80:
            return 0
        if b >= 0xC0:  # a lead byte: the sequence needs 2, 3 or 4 bytes
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return i if need > i else 0
    return 0


class _JsonArray:
    """Scanner state: ``buf[pos:]`` is text not yet consumed; ``byte`` and ``line`` locate ``buf[pos]``."""

    def __init__(self, fh, label: str, max_bytes: int, chunk: int) -> None:
        self.fh, self.label, self.max_bytes, self.chunk = fh, label, max_bytes, chunk
        self.decoder = json.JSONDecoder()
        self.buf, self.pos, self.byte, self.line, self.eof = "", 0, 0, 1, False
        self.pending = b""  # an incomplete UTF-8 sequence at the end of the last chunk
        self.smuggled = False  # invalid UTF-8 was seen: check each record for it from now on

    def _read(self, size: int) -> None:
        data = self.fh.read(size)
        self.eof = not data
        if self.pending:
            data, self.pending = self.pending + data, b""
        if not self.eof:
            cut = _incomplete_tail(data)
            if cut:
                data, self.pending = data[:-cut], data[-cut:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.smuggled = True
            text = data.decode("utf-8", "surrogateescape")
        self.buf = self.buf[self.pos:] + text
        self.pos = 0

    def _advance(self, end: int) -> bytes:
        """Consume ``buf[pos:end]`` and return its exact bytes."""
        raw = self.buf[self.pos:end].encode("utf-8", "surrogateescape")
        self.line += self.buf.count("\n", self.pos, end)
        self.byte += len(raw)
        self.pos = end
        return raw

    def _peek(self) -> str | None:
        """The next non-whitespace character (whitespace is consumed), None at the end of the file."""
        while True:
            end = _WS.match(self.buf, self.pos).end()
            self._advance(end)
            if end < len(self.buf):
                return self.buf[end]
            if self.eof:
                return None
            self._read(self.chunk)

    def _value(self) -> tuple[Any, int]:
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:  # a number at the end of buf may go on
                    return value, end
            except json.JSONDecodeError as e:
                # Text cut at the end of buf fails at its very end, or inside a string that runs to
                # the end; an error well before the end is a real one and reading on cannot fix it.
                if self.eof or (not e.msg.startswith("Unterminated string") and e.pos < len(self.buf) - 16):
                    raise
            pending = len(self.buf) - self.pos
            if pending > self.max_bytes:  # characters <= bytes, so it is over the cap for sure
                raise _TooBig
            self._read(max(self.chunk, pending))  # doubling keeps re-parsing linear

    def _byte_at(self, pos: int) -> int:
        return self.byte + len(self.buf[self.pos:pos].encode("utf-8", "surrogateescape"))

    def _fatal(self, index: int, message: str, line: int | None = None,
               offset: int | None = None) -> RawRecord:
        return RawRecord(self.label, self.line if line is None else line,
                         self.byte if offset is None else offset, index,
                         problem=RecordProblem(message), fatal=True)

    def records(self) -> Iterator[RawRecord]:
        self._read(self.chunk)
        if self.buf.startswith("\ufeff"):
            self.pos, self.byte = 1, 3
        c = self._peek()
        if c is None:
            return  # nothing but whitespace: the caller reports an empty file
        if c != "[":
            hint = (" (one JSON object per line? name the file .jsonl)" if c == "{" else "")
            yield self._fatal(0, f"a .json file must hold one JSON array of records, starting with '['; "
                              f"found {c!r}{hint}")
            return
        self._advance(self.pos + 1)
        index = 0
        last = "there is no complete record before it"
        if self._peek() == "]":
            self._advance(self.pos + 1)
            yield from self._tail(index)
            return
        while True:
            if self._peek() is None:
                yield self._fatal(index, f"the JSON array is not closed: the file ends after the last "
                                  f"record (missing ']'; truncated?); {last}")
                return
            line, offset = self.line, self.byte
            try:
                value, end = self._value()
            except _TooBig:
                yield self._fatal(index, f"the record starting here is larger than max_record_bytes "
                                  f"({self.max_bytes}) or malformed; the records after it cannot be located, "
                                  f"so the rest of the file is left out; {last}")
                return
            except json.JSONDecodeError as e:
                yield self._fatal(index, self._decode_problem(e, index, last), line, offset)
                return
            raw = self._advance(end)
            item = RawRecord(self.label, line, offset, index, raw=raw, value=value)
            index += 1
            item.problem = self._record_problem(raw, value, offset)
            yield item
            ident = value.get("id") if isinstance(value, dict) else None
            last = (f"the last complete record is id {ident!r} at line {line}"
                    if isinstance(ident, (str, int)) else f"the last complete record starts at line {line}")
            c = self._peek()
            if c == ",":
                self._advance(self.pos + 1)
                continue
            if c == "]":
                self._advance(self.pos + 1)
                yield from self._tail(index)
                return
            if c is None:
                yield self._fatal(index, f"the JSON array is not closed: the file ends after the last "
                                  f"record (missing ']'; truncated?); {last}")
                return
            yield self._fatal(index, f"malformed JSON: expected ',' or ']' after the record at line {line}, "
                              f"found {c!r}; the rest of the file is left out")
            return

    def _tail(self, index: int) -> Iterator[RawRecord]:
        if self._peek() is not None:
            yield self._fatal(index, "unexpected data after the end of the JSON array")

    def _record_problem(self, raw: bytes, value: Any, offset: int) -> RecordProblem | None:
        if len(raw) > self.max_bytes:
            return RecordProblem(f"record is over max_record_bytes ({self.max_bytes}): {len(raw)} bytes")
        if self.smuggled:
            text = raw.decode("utf-8", "surrogateescape")
            bad = _SMUGGLED_BYTE.search(text)
            if bad:
                at = offset + len(text[:bad.start()].encode("utf-8", "surrogateescape"))
                return RecordProblem(f"invalid UTF-8 (byte 0x{ord(bad.group()) - 0xDC00:02x}) at byte {at}; "
                                     "re-encode the file as UTF-8", offset=at)
        return _surrogate_problem(raw, value)

    def _decode_problem(self, e: json.JSONDecodeError, index: int, last: str) -> str:
        at = self._byte_at(e.pos)
        done = f"the {index} complete record(s) before it can be read with {_SKIP_HINT}"
        if e.msg.startswith("Unterminated string") or blank(self.buf[e.pos:]):
            where = (f"inside a string that starts at byte {at}" if e.msg.startswith("Unterminated string")
                     else f"at byte {at}")
            return (f"the JSON array is cut off: the file ends inside the record that starts here "
                    f"({where}; truncated file?); {last}; {done}")
        ch = self.buf[e.pos] if e.pos < len(self.buf) else ""
        what = (f"invalid UTF-8 (byte 0x{ord(ch) - 0xDC00:02x})" if _SMUGGLED_BYTE.match(ch)
                else f"malformed JSON ({e.msg})")
        line = self.line + self.buf.count("\n", self.pos, e.pos)
        return (f"{what} at byte {at} (line {line}) in the record that starts here; the records after it "
                f"cannot be located, so the rest of the file is left out; {last}; {done}")


def _iter_table(file: Path, label: str, kind: str, max_bytes: int) -> Iterator[RawRecord]:
    """Rows of a Parquet file or a ``datasets`` Arrow stream file, as dicts (``line`` = row + 1)."""
    row = 0
    try:
        for batch in _batches(file, kind):
            for value in batch.to_pylist():
                canonical = canonical_json(value)
                item = RawRecord(label, row + 1, None, row, value=value, canonical=canonical)
                if len(canonical) > max_bytes:
                    item.problem = RecordProblem(f"row is over max_record_bytes ({max_bytes}): "
                                                 f"{len(canonical)} bytes as JSON")
                yield item
                row += 1
    except (pa.ArrowException, OSError) as e:
        raise BadInputError(label, f"cannot read this {kind} file: {e}") from None


def _batches(file: Path, kind: str):
    if kind == "parquet":
        yield from pq.ParquetFile(file).iter_batches(batch_size=4096)
        return
    source = pa.memory_map(str(file))
    try:
        reader = pa.ipc.open_stream(source)  # what datasets writes
    except pa.ArrowInvalid:
        source = pa.memory_map(str(file))
        file_reader = pa.ipc.open_file(source)
        for i in range(file_reader.num_record_batches):
            yield file_reader.get_batch(i)
        return
    yield from reader


def read_table(file: str | Path):
    """The whole Parquet or ``datasets`` Arrow file as a pyarrow Table (rows as ``iter_records``)."""
    kind = file_kind(file)
    if kind not in ("parquet", "arrow"):
        raise ValueError(f"not a table file: {file}")
    return pa.Table.from_batches(list(_batches(Path(file), kind)), schema=_schema(Path(file), kind))


def _schema(file: Path, kind: str):
    if kind == "parquet":
        return pq.ParquetFile(file).schema_arrow
    try:
        return pa.ipc.open_stream(pa.memory_map(str(file))).schema
    except pa.ArrowInvalid:
        return pa.ipc.open_file(pa.memory_map(str(file))).schema


def _to_example(item: RawRecord, fmt: str | None, cols: dict[str, str]) -> Example:
    value = item.value
    if not isinstance(value, dict):
        raise RecordProblem(f"record is {_kind(value)}, not an object; each record must be a JSON object "
                            "such as {\"instruction\": ..., \"output\": ...}")
    fields = rename(value, cols)
    layout = fmt or detect(fields)
    if layout is None:
        keys = ", ".join(sorted(map(str, value))[:12]) or "none"
        raise RecordProblem(f"cannot tell the layout: none of the fields messages, conversations, "
                            f"instruction, prompt or text is present (keys: {keys}); map your field names "
                            "with columns= (--columns) or force a layout with format= (--format)")
    messages = to_messages(fields, layout, cols)
    ident = record_id(fields, value, item.canonical, cols, null_is_absent=item.raw is None)
    alpaca = None
    if layout == "alpaca":
        inp = fields.get("input")
        alpaca = (fields.get("instruction") or "", inp if isinstance(inp, str) else "", messages[-1].content)
    return Example(id=ident, messages=messages, format=layout, file=item.file, line=item.line or 0,
                   index=item.index, raw=item.raw, record=value, alpaca=alpaca)
