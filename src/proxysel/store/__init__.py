"""The run folder (DESIGN.md section 4): atomic writes, the run lock, stages, scores, embeddings."""

from .atomic import (
    PARQUET_OPTIONS,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    dumps_json,
    to_jsonable,
)
from .lock import RunLock, read_lock
from .run import (
    SCORE_COLUMNS,
    Run,
    RunFolder,
    SelectionRecord,
    Stage,
    check_name,
    fingerprint_diff,
    package_versions,
)

__all__ = [
    "PARQUET_OPTIONS",
    "SCORE_COLUMNS",
    "Run",
    "RunFolder",
    "SelectionRecord",
    "RunLock",
    "Stage",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "atomic_write_text",
    "check_name",
    "dumps_json",
    "fingerprint_diff",
    "package_versions",
    "read_lock",
    "to_jsonable",
]
