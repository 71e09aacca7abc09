"""What a stage reads: the pool (and a reference set), read and validated before any model work,
and the record of what was read in the manifest, so that ``select`` can read the same records again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxysel.data import read_pool
from proxysel.data.example import Pool
from proxysel.errors import UsageError
from proxysel.options import ReadConfig

__all__ = ["read_input", "read_run_pool", "record_data", "record_reference"]


def read_input(data: str | Path, read: ReadConfig, what: str = "data") -> Pool:
    """Read ``data`` with ``read``'s options; UsageError (exit code 2) when nothing usable is left."""
    pool = read_pool(data, **read.read_options())
    if not pool.examples:
        raise UsageError(f"{data}: no usable examples" + ("" if what == "data" else f" in the {what} set"))
    return pool


def record_data(run: Any, data: str | Path, pool: Pool, read: ReadConfig) -> None:
    """Record in the manifest what was read and how; refuse a run folder that holds other data."""
    block = {"path": str(Path(data).resolve()), "fingerprint": pool.fingerprint,
             "n_examples": len(pool.examples), "files": pool.paths, "read_options": read.read_options()}
    old = run.manifest.get("data")
    if old and old.get("fingerprint") not in (None, pool.fingerprint) and not run.overwrite:
        raise UsageError(f"run folder {run.path} holds results for other data (fingerprint "
                         f"{str(old.get('fingerprint'))[:12]}, now {pool.fingerprint[:12]}); use a new --out "
                         "or pass --overwrite")
    run.update_manifest(data=block, skipped_records=[s.to_dict() for s in pool.skipped])


def record_reference(run: Any, path: str | Path, reference: Pool, read: ReadConfig) -> None:
    """Record the reference set a reference-aware stage read (``manifest["reference"]``)."""
    run.update_manifest(reference={"path": str(Path(path).resolve()), "fingerprint": reference.fingerprint,
                                   "n_examples": len(reference.examples), "files": reference.paths,
                                   "read_options": read.read_options(),
                                   "skipped_records": [s.to_dict() for s in reference.skipped]})


def _recorded(run: Any, key: str, hint: str) -> dict[str, Any]:
    block = run.manifest.get(key)
    if not block or "path" not in block:
        raise UsageError(f"run folder {run.path} has no {hint}")
    return block


def read_run_pool(run: Any, data: str | Path | None = None, *, key: str = "data") -> Pool:
    """Read the run's input (``key`` "data") or reference set ("reference") again, with the options it
    was read with; check that it did not change since."""
    hint = ("input data recorded; run `proxysel score` or `proxysel train-proxy` into it first"
            if key == "data"
            else "reference set recorded; score a reference-aware signal with --reference first")
    block = _recorded(run, key, hint)
    pool = read_pool(data or block["path"], **dict(block.get("read_options") or {}))
    if pool.fingerprint != block.get("fingerprint"):
        raise UsageError(f"the {'input data' if key == 'data' else 'reference set'} at "
                         f"{data or block['path']} changed since it was scored (fingerprint "
                         f"{pool.fingerprint[:12]} != {str(block.get('fingerprint'))[:12]}); score it again "
                         "or point --data at the original")
    return pool
