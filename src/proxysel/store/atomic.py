"""Crash-safe file writes: a reader sees the old file or the whole new one, never a part.

Every writer here writes a temporary file in the destination's folder (named ``.tmp-<name>.<random>``
so that it is hidden and recognisable), flushes and fsyncs it, renames it over the destination with
``os.replace`` (atomic on POSIX and Windows within one filesystem) and then fsyncs the folder so the
rename itself survives a power cut. If anything fails before the rename, the temporary file is
removed and the destination is untouched.

Parquet and JSON output is deterministic: the same table or object gives the same bytes, so a
killed run that is started again ends with the same files as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow.parquet as pq

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

#: Prefix of every temporary file; a run folder's owner may delete such files when no writer is alive.
TMP_PREFIX = ".tmp-"

#: Parquet writer options fixed for byte-for-byte reproducible files. The file metadata then holds
#: only the schema and ``created_by: parquet-cpp-arrow version X`` (no timestamps, no paths).
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "version": "2.6",
    "data_page_version": "1.0",
    "use_dictionary": True,
    "write_statistics": True,
    "row_group_size": 1 << 20,
}


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a folder so that renames and creations inside it are durable (no-op where unsupported)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # Windows cannot open folders; some filesystems refuse
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. EINVAL on filesystems without directory fsync
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None],
                  before_replace: Callable[[Path], bool] | None = None) -> Path:
    """Call ``write(f)`` on a fresh temporary file next to ``path``, then rename it onto ``path``.

    before_replace(tmp): called with the complete, fsynced temporary file just before the rename
    (to record its digest first, so that a crash in between leaves a detectable mismatch rather
    than an unrecorded file); returning False drops the temporary file and leaves ``path`` as it was.
    """
    path = Path(path)
    folder = path.parent
    tmp = folder / f"{TMP_PREFIX}{path.name}.{secrets.token_hex(6)}"
    # O_EXCL: never write into someone else's temp file; mode 0o666 lets the umask decide, as for
    # any ordinary file (mkstemp would leave the final file 0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None and not before_replace(tmp):
            os.unlink(tmp)
            return path
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(folder)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a Path.

    >>> atomic_write_bytes(run / "shard-00000.done", b"")  # doctest: +SKIP
    """
    return _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (no newline translation: ``\\n`` stays ``\\n``)."""
    return atomic_write_bytes(path, text.encode(encoding))


def to_jsonable(obj: Any) -> Any:
    """A plain-JSON copy of ``obj``: NaN and +-inf become None, numpy scalars and arrays become
    Python numbers and lists, tuples become lists, Paths become strings, mapping keys strings.

    Raises TypeError naming the type for anything else (sets, objects), rather than guessing.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    # numpy without importing it: scalars have .item(), arrays .tolist()
    if type(obj).__module__ == "numpy":
        if hasattr(obj, "tolist") and getattr(obj, "ndim", 0) > 0:
            return to_jsonable(obj.tolist())
        if hasattr(obj, "item"):
            return to_jsonable(obj.item())
    raise TypeError(f"cannot store a {type(obj).__name__} in JSON: {obj!r:.80}")


def dumps_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys, indent 2, UTF-8 characters kept, NaN as null, final newline."""
    return json.dumps(to_jsonable(obj), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as canonical JSON (see ``dumps_json``) to ``path`` atomically."""
    return atomic_write_text(path, dumps_json(obj))


def atomic_write_parquet(path: str | os.PathLike[str], table: "pa.Table",
                         before_replace: Callable[[Path], bool] | None = None) -> Path:
    """Write ``table`` to ``path`` as Parquet, atomically and deterministically.

    The same table (same schema, same values, whatever its chunking) always gives the same bytes
    with a given pyarrow version: chunks are combined first and the writer options are fixed
    (``PARQUET_OPTIONS``: zstd, one row group per 2**20 rows). Schema metadata is kept as given.
    before_replace: as for ``_atomic_write`` (called with the finished temporary file).
    """
    table = table.combine_chunks()
    return _atomic_write(path, lambda f: pq.write_table(table, f, **PARQUET_OPTIONS), before_replace)


def atomic_write_folder(folder: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Make ``folder`` by ``write(tmp)`` into a temporary sibling folder, then one rename: a killed
    process leaves no half folder under the final name (a leftover temporary one is removed on the
    next call). A folder that already exists is kept as it is. Returns ``folder``."""
    folder = Path(folder)
    if folder.exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f"{TMP_PREFIX}{folder.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = folder.parent / f"{TMP_PREFIX}{folder.name}.{secrets.token_hex(6)}"
    try:
        tmp.mkdir()
        write(tmp)
        os.replace(tmp, folder)
        fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def save_model_folder(folder: str | os.PathLike[str], model: Any, tokenizer: Any) -> Path:
    """A transformers model and its tokenizer into ``folder`` (safetensors only), atomically."""
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    return atomic_write_folder(folder, write)
