"""Scratch folders for scripts: temporary, and gone when the process exits."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

__all__ = ["scratch_dir"]


def scratch_dir(prefix: str) -> Path:
    """A new folder under the system's temp dir, removed (with everything in it) at interpreter exit.

    The benchmark scripts write demo pools, models and run folders there; ``tempfile.mkdtemp`` alone
    left one behind per run (a GPU-suite dry run in CI: 44 MB each), until a shared disk filled up."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return Path(path)
