"""sha256 digests of run files, and the ``.done`` markers that vouch for them.

A marker is JSON ``{"bytes": int, "rows": int, "sha256": hex}`` written (atomically) after the Parquet file of
the same stem: ``shard-00000.parquet`` and ``shard-00000.done``. A file is *intact* when its bytes
hash to what its marker, or the manifest, recorded. The checks here only read; what to do about a
damaged file (recompute a shard, rebuild scores.parquet) is decided by ``store.run``, and
``store.verify`` reports on a whole run folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file at ``path`` (read in chunks; the file is never held whole in memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` (a marker, a fingerprint), or None if it is missing, unreadable or
    not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def digest_problem(path: Path, sha256: str | None, size: int | None = None,
                   source: str = "the manifest") -> str | None:
    """None if ``path`` hashes to ``sha256`` (or ``sha256`` is None: nothing was recorded); else what
    is wrong, in words for a message that already names the file.

    size: the recorded size in bytes, if known, to say "truncated" or "zero-length" rather than only
    "other bytes".
    """
    if sha256 is None:
        return None
    try:
        actual_size = path.stat().st_size
        actual = file_sha256(path)
    except FileNotFoundError:
        return f"missing, though {source} records it"
    if actual == sha256:
        return None
    if actual_size == 0:
        what = "is empty (zero-length)"
    elif size is not None and actual_size < size:
        what = f"is truncated ({actual_size:,} of {size:,} bytes)"
    elif size is not None and actual_size != size:
        what = f"has {actual_size:,} bytes where {size:,} were written"
    else:
        what = "has other bytes than were written"
    return f"{what}: sha256 {actual[:12]}, {source} records {sha256[:12]}"


def marker_problem(path: Path, marker: Path) -> str | None:
    """None if ``path`` is what its ``.done`` ``marker`` vouches for; else what is wrong, in words.

    A marker without a ``sha256`` field (none were written so, but a hand-made one may be) vouches
    for any bytes.
    """
    data = read_json(marker)
    if data is None:
        return f"its marker {marker.name} is missing or unreadable"
    sha, size = data.get("sha256"), data.get("bytes")  # older markers have no size
    return digest_problem(path, sha if isinstance(sha, str) else None,
                          size if isinstance(size, int) else None, source=f"its marker {marker.name}")
