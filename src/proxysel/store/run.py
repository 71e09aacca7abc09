"""The run folder: where every stage of a proxysel run leaves its results (DESIGN.md section 4).

```
RUN/manifest.json        versions, creation time, one entry per stage, skipped records, ...
RUN/scores.parquet       one row per example id; one column per signal (SCORE_COLUMNS order)
RUN/embeddings.parquet   id + fixed-size float32 vector
RUN/stages/<stage>/      fingerprint.json, shard-00000.parquet + shard-00000.done, COMPLETE
RUN/<name>_embeddings.parquet  other vector sets (``rds``), the same layout
RUN/selections/<name>/   selected.<ext>, selection.parquet, meta.json
RUN/config.yaml          the resolved config of the latest ``proxysel run``
RUN/report.html
RUN/data/                input written by proxysel itself (the demo sample)
RUN/logs/
```

Nothing outside ``store/`` builds a path inside a run folder: ``RunFolder`` (read-only, no lock)
and ``Run`` (locked, for writing) own the layout and hand out readers and writers.

A run is opened by one process at a time (``RUN/.lock``). Each stage has a fingerprint (data,
model, parameters): the same fingerprint resumes the stage, skipping finished shards; a different
one is refused with RunConflictError unless the run was opened with ``overwrite=True``. Every file
is written to a temporary name and renamed (``store.atomic``), and Parquet output is deterministic.

Resumes are verified. A shard counts as finished only while its bytes hash to the sha256 of its
``.done`` marker: a damaged shard is computed again, with a warning naming it. The manifest records
the sha256 of scores.parquet and embeddings.parquet, and how each was made (``manifest["scores"]``:
the stages merged into it, in order); a damaged or missing one is rebuilt from the stages when it is
next read. Each file is hashed once per process while its size and mtime stay the same.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import platform
import re
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import proxysel
from proxysel.logs import attach_run

from ..errors import ProxyselError, RunConflictError, UsageError
from ..names import check_name
from .atomic import TMP_PREFIX, atomic_write_json, atomic_write_parquet, dumps_json, to_jsonable
from .digest import digest_problem, file_sha256, marker_problem, read_json
from .lock import LOCK_NAME, RunLock

log = logging.getLogger(__name__)

#: Version of the run-folder layout, stored in the manifest.
STORE_VERSION = 1

#: Canonical order of the scores.parquet columns; any other column follows, alphabetically.
SCORE_COLUMNS = (
    "id", "n_tokens", "n_response_tokens", "truncated",
    "loss", "ppl", "ppl_epoch", "trajectory",
    "lp", "lp_app", "ifd", "ifd_loss", "ask_llm", "density", "cluster",
)

#: Packages whose versions every manifest records (where installed; none of them is imported).
RECORDED_PACKAGES = ("proxysel", "numpy", "pyarrow", "torch", "transformers")

MANIFEST = "manifest.json"
SCORES = "scores.parquet"
EMBEDDINGS = "embeddings.parquet"
FINGERPRINT = "fingerprint.json"
COMPLETE = "COMPLETE"
#: the keys a ``.done`` marker vouches for its file with; ``write_marked``'s info adds others
MARKER_KEYS = ("bytes", "rows", "sha256")
CONFIG = "config.yaml"
REPORT = "report.html"
SELECTION_TABLE = "selection.parquet"
SELECTION_META = "meta.json"
SELECTION_COLUMNS = ("id", "selected", "rank", "cluster", "reason")
#: A stage's own table when it is derived from its shards rather than their concatenation
#: (``Stage.merge_scores(table, derived=True)``), kept so that scores.parquet can be rebuilt.
DERIVED = "merged.parquet"
_SHARD_RE = re.compile(r"^shard-(\d{5,})\.done$")
_TRASH_PREFIX = ".trash-"


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def package_versions() -> dict[str, str]:
    """Versions of python, proxysel, numpy, pyarrow, torch, transformers (the installed ones only).

    Read from package metadata, so torch and transformers are never imported.
    """
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if "proxysel" not in versions:  # running from a source tree that is not installed

        versions["proxysel"] = str(getattr(proxysel, "__version__", "unknown"))
    return versions


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def content_hash(obj: Any) -> str:
    """16 hex digits of sha256 over ``obj`` as canonical JSON (sorted keys): a fingerprint entry for
    something too big to record whole (a list of ids, a list of answers)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Lines ``key: old -> new`` for every (dotted, nested) key whose value differs."""
    a, b = _flatten(old), _flatten(new)
    absent = object()
    lines = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, absent), b.get(key, absent)
        if va != vb:
            sa = "(absent)" if va is absent else _short(va)
            sb = "(absent)" if vb is absent else _short(vb)
            lines.append(f"{key or '(fingerprint)'}: {sa} -> {sb}")
    return lines


def marker_info(marker: Path) -> dict[str, Any]:
    """The facts a ``.done`` marker keeps besides its checksum (``write_marked``'s info); {} when the
    marker has none or is missing."""
    return {k: v for k, v in (read_json(marker) or {}).items() if k not in MARKER_KEYS}


class Stage:
    """One stage of a run: sharded outputs under ``RUN/stages/<name>/`` plus a COMPLETE marker.

    Made by ``Run.stage``. ``overwritten`` is True when an older stage with another fingerprint
    was removed to make room for this one (stages that read its outputs are then out of date);
    ``previous_fingerprint`` is that older fingerprint.

    >>> stage = run.stage("loss", {"data": "ab12", "model": "smollm2-135m"})  # doctest: +SKIP
    >>> for i, batch in enumerate(shards):
    ...     if not stage.shard_done(i):
    ...         stage.write_shard(i, compute(batch))
    >>> stage.merge_scores()
    >>> stage.mark_complete({"counts": {"examples": n}})

    A shard is done while its bytes match its marker's sha256 (checked once per process, see
    ``Run.check_file``); a damaged one is not done, so the stage's loop computes it again.
    """

    def __init__(self, run: Run, name: str, fingerprint: dict[str, Any], *, overwritten: bool = False,
                 previous_fingerprint: dict[str, Any] | None = None) -> None:
        self.run = run
        self.name = name
        self.fingerprint = fingerprint
        self.path = run.path / "stages" / name
        self.overwritten = overwritten
        self.previous_fingerprint = previous_fingerprint

    def __repr__(self) -> str:
        return f"Stage({self.name!r}, path={str(self.path)!r}, complete={self.complete})"

    def shard_path(self, i: int) -> Path:
        return self.path / shard_file(self._index(i))

    def _marker(self, i: int) -> Path:
        return self.path / f"shard-{self._index(i):05d}.done"

    @staticmethod
    def marker_of(path: Path) -> Path:
        """The ``.done`` marker that vouches for the Parquet file ``path`` (same folder and stem)."""
        return path.with_suffix(".done")

    @staticmethod
    def _index(i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0:
            raise ValueError(f"shard index must be an integer >= 0, got {i!r}")
        return int(i)

    def shard_done(self, i: int) -> bool:
        """Whether shard ``i`` was written completely and is intact (its bytes match its marker).

        A shard whose marker exists but whose bytes do not match (or that is missing) is not done:
        a warning names it, and the stage computes it again.
        """
        if not self._marker(i).is_file():
            return False
        return self.run.check_file(self.shard_path(i), marker=self._marker(i),
                                   consequence="it is treated as not done and computed again") is None

    def _marked(self) -> list[int]:
        """Indices of the shards that have a marker, ascending (intact or not)."""
        if not self.path.is_dir():
            return []
        found = (_SHARD_RE.match(p.name) for p in self.path.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def shards_done(self) -> list[int]:
        """Indices of the finished, intact shards, ascending."""
        return [i for i in self._marked() if self.shard_done(i)]

    def write_shard(self, i: int, table: pa.Table, info: Mapping[str, Any] | None = None) -> Path:
        """Write shard ``i`` (Parquet, atomic) and then its ``.done`` marker; returns the shard path.

        The marker comes last, so a crash in between leaves the shard "not done" and it is redone.
        info: facts about how the shard was computed, kept in its marker, e.g. ``forward_tokens``
        (``RunFolder.stage_shard_info`` reads them): they stay with the shard when a later process
        finishes the stage.
        """
        self.run._check_open()
        return self.run.write_marked(self.shard_path(i), table, info=info)

    def read_shard(self, i: int) -> pa.Table:
        if not self.shard_done(i):
            raise ProxyselError(f"shard {i} of stage '{self.name}' in {self.run.path} is not finished"
                                + ("; its file is damaged, run the stage again to recompute it"
                                   if self._marker(i).is_file() else ""))
        return pq.read_table(self.shard_path(i))

    def read_shards(self, n_shards: int | None = None) -> pa.Table:
        """All finished shards concatenated in shard order.

        With ``n_shards``, raise ProxyselError unless shards 0..n_shards-1 are all finished.
        Without it, a marked shard that is damaged is an error too (it is never silently left out).
        """
        done = self.shards_done()
        damaged = sorted(set(self._marked()) - set(done))
        if n_shards is None and damaged:
            raise ProxyselError(f"{self.shard_path(damaged[0])} does not match its marker"
                                f"{f' (and {len(damaged) - 1} more shards)' if len(damaged) > 1 else ''}; "
                                f"run the stage again to recompute it")
        if n_shards is not None:
            missing = sorted(set(range(n_shards)) - set(done))
            if missing:
                raise ProxyselError(f"stage '{self.name}' in {self.run.path} misses shards "
                                    f"{missing[:10]}{' ...' if len(missing) > 10 else ''}; "
                                    "run the stage again")
            done = list(range(n_shards))
        if not done:
            raise ProxyselError(f"stage '{self.name}' in {self.run.path} has no finished shards")
        tables = []
        for i in done:
            table = pq.read_table(self.shard_path(i))
            rows = json.loads(self._marker(i).read_text()).get("rows")
            if rows is not None and rows != table.num_rows:
                raise ProxyselError(f"{self.shard_path(i)} has {table.num_rows} rows but its marker says "
                                    f"{rows}; delete it (or pass --overwrite) and run the stage again")
            tables.append(table)
        return pa.concat_tables(tables, promote_options="default")

    def merge_scores(self, table: pa.Table | None = None, *, derived: bool = False) -> pa.Table:
        """Merge this stage's per-example table into scores.parquet (``Run.merge_scores``) and record
        the merge, so that a damaged scores.parquet can be rebuilt from the stages.

        table:   default: the finished shards (``read_shards``); a caller that has just read them
                 may pass them. derived=True: ``table`` is computed from the shards by code the
                 store does not know (train-proxy's ppl_epoch and lp), so it is kept as
                 ``stages/<name>/merged.parquet`` (+ marker) for a rebuild to replay; it is only
                 rewritten when its bytes change.
        Returns the merged scores table.
        """
        if table is None:
            table = self.read_shards()
        if derived:
            self.run.write_marked(self.path / DERIVED, table, unchanged_ok=True)
        return self.run.merge_scores(table, source=self.name)

    @property
    def complete(self) -> bool:
        """Whether ``mark_complete`` was called for this fingerprint."""
        return (self.path / COMPLETE).is_file()

    def mark_complete(self, info: dict[str, Any] | None = None) -> None:
        """Record ``info`` (params, timings, counts, ...) in the manifest, then write COMPLETE.

        The manifest entry becomes ``{**info, fingerprint, status: "complete", started, completed}``.
        """
        self.run._check_open()
        entry = dict(self.run.manifest["stages"].get(self.name, {}))
        entry.update(info or {})
        entry.update(fingerprint=self.fingerprint, status="complete", completed=_now_iso())
        entry.setdefault("started", entry["completed"])
        self.run.record_stage(self.name, entry)
        atomic_write_json(self.path / COMPLETE, {"completed": entry["completed"]})


def shard_file(i: int) -> str:
    """The file name of shard ``i`` of a stage: ``shard-00000.parquet`` (its marker: ``Stage.marker_of``)."""
    return f"shard-{i:05d}.parquet"


def vectors_file(name: str) -> str:
    """The file of vector set ``name``: ``embeddings.parquet`` for ``embedding``, else
    ``<name>_embeddings.parquet``."""
    check_name(name, "vector set name")
    return EMBEDDINGS if name == "embedding" else f"{name}_embeddings.parquet"


def list_matrix(col: pa.Array | pa.ChunkedArray, name: str, *, ragged: str = "error") -> np.ndarray:
    """A list<number> column as float64 (n, width), the one conversion every reader uses.

    A null row is a row of NaN (a selector then leaves it out as non-finite). Rows of different
    lengths: ``ragged="error"`` raises ValueError naming the column (a trajectory must have one
    length); ``"pad"`` pads the shorter ones with NaN (the report shows what there is).
    """
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    valid = ~np.isnan(lengths) if lengths.dtype.kind == "f" else np.ones(n, dtype=bool)
    lengths = np.where(valid, np.nan_to_num(lengths), 0).astype(np.int64)
    widths = np.unique(lengths[valid])
    if len(widths) > 1 and ragged == "error":
        raise ValueError(f"score table: list column '{name}' has rows of different lengths "
                         f"({', '.join(map(str, widths[:5]))})")
    width = int(widths.max()) if len(widths) else 0
    out = np.full((n, width), np.nan)
    if width == 0:
        return out
    flat = pc.list_flatten(arr).cast(pa.float64()).to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(n), lengths)
    starts = np.cumsum(lengths) - lengths
    out[rows, np.arange(len(flat)) - np.repeat(starts, lengths)] = flat
    return out


@dataclass
class SelectionRecord:
    """One selection folder as read: ``table`` is selection.parquet (id, selected, rank, cluster,
    reason, ...), ``meta`` its meta.json ({} and a ``note`` when missing or unreadable),
    ``file`` the selected records (None when meta does not name it), ``mtime`` of the table."""

    name: str
    table: pa.Table
    meta: dict[str, Any]
    note: str | None
    file: Path | None
    mtime: float

    @property
    def selected_ids(self) -> list[str]:
        """Ids of the kept rows, in pool order."""
        ids = self.table.column("id").to_pylist()
        return [i for i, s in zip(ids, self.table.column("selected").to_pylist()) if s]


@dataclass(frozen=True)
class StageState:
    """What a stage folder holds: its fingerprint (as stored, text) and whether it completed."""

    fingerprint: str
    complete: bool


class RunFolder:
    """A run folder read without taking its lock: the layout, and a reader for every file in it.

    ``Run`` (locked, for writing) extends it. ``RunFolder.at(path)`` refuses a folder that is not a
    run folder (no manifest.json).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._manifest: dict[str, Any] | None = None

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> "RunFolder":
        path = Path(path)
        if not path.is_dir():
            raise UsageError(f"no run folder at {path}")
        if not (path / MANIFEST).is_file():
            raise UsageError(f"{path} is not a proxysel run folder (no {MANIFEST})")
        return cls(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    # ---- paths ---------------------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def scores_path(self) -> Path:
        return self.path / SCORES

    @property
    def embeddings_path(self) -> Path:
        return self.path / EMBEDDINGS

    def vectors_path(self, name: str) -> Path:
        return self.path / vectors_file(name)

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def config_path(self) -> Path:
        """``RUN/config.yaml``: the resolved config of the latest ``proxysel run``."""
        return self.path / CONFIG

    @property
    def report_path(self) -> Path:
        return self.path / REPORT

    @property
    def data_dir(self) -> Path:
        """``RUN/data/``: input proxysel wrote itself (the demo sample)."""
        return self.path / "data"

    def _inside(self, candidate: Path, what: str) -> Path:
        """``candidate`` if, with symlinks resolved, it lies strictly inside the run folder."""
        root = self.path.resolve()
        resolved = candidate.resolve()
        if resolved == root or not resolved.is_relative_to(root):
            raise UsageError(f"{what} {candidate} resolves to {resolved}, outside the run folder {root}")
        return candidate

    # ---- manifest ------------------------------------------------------------------------------

    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of the manifest ({} when there is none yet)."""
        if self._manifest is None:
            try:
                loaded = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                loaded = {}
            except (OSError, ValueError) as err:
                raise ProxyselError(f"cannot read {self.manifest_path}: {err}") from err
            if not isinstance(loaded, dict):
                raise ProxyselError(f"{self.manifest_path} is not a JSON object")
            self._manifest = loaded
        return copy.deepcopy(self._manifest)

    # ---- scores and vectors --------------------------------------------------------------------

    def _read_recorded(self, path: Path, record: Any) -> pa.Table | None:
        """The Parquet file ``path`` (scores or a vector set), None if absent and unrecorded.

        Raises ProxyselError, naming the file and the repair, if it does not match the sha256 its
        manifest ``record`` holds: a reader without the lock does not rebuild it (``Run`` does).
        """
        sha = record.get("sha256") if isinstance(record, dict) else None
        problem = digest_problem(path, sha, record.get("bytes")) if sha else None
        if problem is not None:
            raise ProxyselError(f"{path} {problem}; `proxysel verify {self.path} --repair` rebuilds it from "
                                "the stages")
        return pq.read_table(path) if path.is_file() else None

    def read_scores(self) -> pa.Table | None:
        """``scores.parquet`` as a table, or None if no signal was stored yet."""
        return self._read_recorded(self.scores_path, self.manifest.get("scores"))

    def score_columns(self) -> list[str]:
        """The columns of scores.parquet (from its schema, without reading the data)."""
        return pq.read_schema(self.scores_path).names if self.scores_path.exists() else []

    def score_matrix(self, column: str, *, ragged: str = "error") -> tuple[list[str], np.ndarray]:
        """(ids, float64 (n, width)) of a list column of scores.parquet (``trajectory``,
        ``ppl_epoch``), null rows as NaN (``list_matrix``)."""
        table = pq.read_table(self.scores_path, columns=["id", column])
        return table.column("id").to_pylist(), list_matrix(table.column(column), column, ragged=ragged)

    def vector_sets(self) -> list[str]:
        """Names of the vector sets stored (``embedding``, ``rds``, ...)."""
        names = ["embedding"] if self.embeddings_path.exists() else []
        suffix = "_embeddings.parquet"
        names += sorted(p.name[:-len(suffix)] for p in self.path.glob(f"*{suffix}") if p.is_file())
        return names

    def vector_record(self, name: str) -> dict[str, Any]:
        """The manifest's record of vector set ``name`` (model, dim, n, sha256, bytes, stage), or {}."""
        record = self.manifest.get("embeddings") if name == "embedding" else \
            (self.manifest.get("vectors") or {}).get(name)
        return record if isinstance(record, dict) else {}

    def read_vectors(self, name: str) -> tuple[list[str], np.ndarray]:
        """``(ids, array)`` of vector set ``name``: float32 (n, dim), row i belongs to ``ids[i]``.

        Raises ProxyselError if it was not stored.
        """
        path = self.vectors_path(name)
        table = self._read_recorded(path, self.vector_record(name))
        if table is None:
            what = "embeddings" if name == "embedding" else f"'{name}' vectors"
            raise ProxyselError(f"run folder {self.path} has no {what}; run "
                                f"`proxysel score DATA --signals {name} --out {self.path}` first")
        return embedding_matrix(table)

    def read_embeddings(self) -> tuple[list[str], np.ndarray]:
        """``read_vectors("embedding")``: the sentence embeddings of the ``embedding`` signal."""
        return self.read_vectors("embedding")

    # ---- stages --------------------------------------------------------------------------------

    def _subfolders(self, name: str) -> list[str]:
        """Names of the folders under ``RUN/<name>/`` (hidden ones aside), sorted."""
        folder = self.path / name
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if folder.is_dir() else []

    def stages(self) -> list[str]:
        """Names of the stage folders present, sorted."""
        return self._subfolders("stages")

    def stage_state(self, name: str) -> StageState:
        """The stored fingerprint (text, "" if none) and completion of stage ``name``."""
        folder = self.path / "stages" / check_name(name, "stage name")
        fp = folder / FINGERPRINT
        return StageState(fp.read_text(encoding="utf-8") if fp.exists() else "", (folder / COMPLETE).exists())

    def stage_states(self) -> dict[str, StageState]:
        return {name: self.stage_state(name) for name in self.stages()}

    def stage_folder(self, name: str) -> Path:
        """``RUN/stages/<name>/`` (not created): the shards, markers and own files of stage ``name``;
        UsageError for unsafe names or a folder that resolves outside the run."""
        check_name(name, "stage name")
        return self._inside(self.path / "stages" / name, "stage folder")

    def read_stage_shard(self, name: str, i: int, columns: list[str] | None = None) -> pa.Table:
        """Shard ``i`` of stage ``name`` (only ``columns`` when given), checked against its ``.done`` marker.

        Raises ProxyselError naming the file when the shard is unfinished or its bytes do not match
        its marker: a reader without the lock repairs nothing (rerunning the stage's command does).
        """
        path = self.stage_folder(name) / shard_file(Stage._index(i))
        problem = marker_problem(path, Stage.marker_of(path))
        if problem is not None:
            raise ProxyselError(f"{path} {problem}; run the command that made stage '{name}' again: it "
                                f"computes this shard again")
        return pq.read_table(path, columns=columns)

    def stage_shard_info(self, name: str, i: int) -> dict[str, Any]:
        """What ``Stage.write_shard`` kept in the marker of shard ``i`` of stage ``name`` besides its
        checksum, e.g. ``forward_tokens`` ({} when nothing, or no marker)."""
        return marker_info(Stage.marker_of(self.stage_folder(name) / shard_file(Stage._index(i))))

    def recorded_path(self, relative: Any, what: str) -> Path:
        """The file or folder a manifest entry records by its path relative to the run folder
        (train-proxy's ``history`` and ``final_checkpoint``). ProxyselError unless it is such a path;
        UsageError if it resolves outside the run folder."""
        if not isinstance(relative, str) or not relative or Path(relative).is_absolute():
            raise ProxyselError(f"{self.manifest_path}: {what} is {relative!r}, not a path relative to the "
                                f"run folder")
        return self._inside(self.path / relative, what)

    # ---- selections ----------------------------------------------------------------------------

    def selection_folder(self, name: str) -> Path:
        """``RUN/selections/<name>/`` (not created); UsageError for unsafe names."""
        check_name(name, "selection name")
        return self._inside(self.path / "selections" / name, "selection folder")

    def selections(self) -> list[str]:
        """Names of the selection folders, sorted."""
        return self._subfolders("selections")

    def list_selections(self) -> list[tuple[str, float]]:
        """(name, mtime of its selection.parquet) of every complete selection, oldest first."""
        found = []
        for name in self.selections():
            f = self.path / "selections" / name / SELECTION_TABLE
            if f.is_file():
                found.append((name, f.stat().st_mtime))
        return sorted(found, key=lambda t: (t[1], t[0]))

    def has_selection(self, name: str) -> bool:
        """Whether selection ``name`` was written completely (its meta.json is written last)."""
        return (self.selection_folder(name) / SELECTION_META).is_file()

    def read_selection_meta(self, name: str) -> tuple[dict[str, Any], str | None]:
        """(meta.json as a dict, a note when it is missing or unreadable)."""
        f = self.selection_folder(name) / SELECTION_META
        if not f.is_file():
            return {}, f"selection '{name}' has no {SELECTION_META}: method and budget unknown"
        try:
            meta = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            return {}, f"selection '{name}': cannot read {SELECTION_META} ({err})"
        if not isinstance(meta, dict):
            return {}, f"selection '{name}': {SELECTION_META} is not a JSON object"
        return meta, None

    def read_selection(self, name: str, columns: list[str] | None = None) -> SelectionRecord:
        """Selection ``name``: its table (the required columns checked), meta and records file."""
        folder = self.selection_folder(name)
        path = folder / SELECTION_TABLE
        if not path.is_file():
            raise UsageError(f"run folder {self.path} has no selection '{name}' (selections: "
                             f"{', '.join(self.selections()) or 'none'})")
        table = pq.read_table(path, columns=columns)
        missing = [c for c in (columns or SELECTION_COLUMNS) if c not in table.column_names]
        if missing:
            raise ProxyselError(f"{path} lacks the column(s) {missing}")
        meta, note = self.read_selection_meta(name)
        file = folder / meta["file"] if isinstance(meta.get("file"), str) else None
        return SelectionRecord(name=name, table=table, meta=meta, note=note, file=file,
                               mtime=path.stat().st_mtime)

    def selection_ids(self, name: str) -> list[str]:
        """Ids selection ``name`` kept, in pool order."""
        return self.read_selection(name, columns=["id", "selected"]).selected_ids



class Run(RunFolder):
    """A run folder opened for writing; holds ``RUN/.lock`` until closed.

    >>> with Run.open("runs/alpaca") as run:  # doctest: +SKIP
    ...     stage = run.stage("loss", fingerprint)
    ...     run.merge_scores(table)

    Use ``Run.open``, not the constructor.
    """

    def __init__(self, path: Path, overwrite: bool, lock: RunLock) -> None:
        super().__init__(path)
        self.overwrite = overwrite
        self._lock = lock
        self._manifest: dict[str, Any] = {}
        # path -> (the stat key it was checked at, problem or None); see check_file
        self._checked: dict[Path, tuple[tuple[Any, ...] | None, str | None]] = {}

    # ---- opening and closing -------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], overwrite: bool = False, *, create: bool = True) -> Run:
        """Open (and with ``create``, make) the run folder at ``path`` and lock it.

        overwrite: stages whose fingerprint differs are removed and recomputed instead of refused.
        create:    if False, a missing run folder is a UsageError.

        Raises UsageError if ``path`` is a file, or a non-empty folder that is not a run folder;
        RunLockedError if another live process has it open.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UsageError(f"run folder {path} is a file; choose a folder for --out")
        if not path.exists():
            if not create:
                raise UsageError(f"no run folder at {path}")
            path.mkdir(parents=True)
        elif not (path / MANIFEST).exists():
            strangers = [p.name for p in path.iterdir()
                         if not p.name.startswith((TMP_PREFIX, LOCK_NAME))]
            if strangers:
                raise UsageError(f"{path} is not empty and is not a proxysel run folder (no {MANIFEST}); "
                                 f"choose a new or empty folder for --out")
        lock = RunLock(path)
        lock.acquire()
        run = cls(path, overwrite, lock)
        try:
            run._init()
        except BaseException:
            lock.release()
            raise
        return run

    def _init(self) -> None:
        self._remove_leftovers()
        manifest_path = self.path / MANIFEST
        if manifest_path.exists():
            try:
                self._manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
                if not isinstance(self._manifest, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                raise ProxyselError(f"{manifest_path} is damaged ({err}); restore it or start a new run "
                                    f"folder") from None
            self._manifest.setdefault("stages", {})
            self._manifest.setdefault("skipped_records", [])
            self._manifest["packages"] = package_versions()
        else:
            self._manifest = {
                "store_version": STORE_VERSION,
                "proxysel_version": package_versions()["proxysel"],
                "created": _now_iso(),
                "stages": {},
                "skipped_records": [],
                "packages": package_versions(),
            }
        self._write_manifest()  # first, so that a folder with our subfolders is always a run folder
        for sub in ("stages", "selections", "logs"):
            (self.path / sub).mkdir(exist_ok=True)

        attach_run(self.path)  # RUN/logs/<stamp>-<command>.log while a command's log session is active

    def _remove_leftovers(self) -> None:
        """Delete temp files and half-removed stages left by killed processes (we hold the lock)."""
        for dirpath, dirnames, filenames in os.walk(self.path):
            for name in filenames:
                if name.startswith(TMP_PREFIX) or name.startswith(f"{LOCK_NAME}.stale-"):
                    Path(dirpath, name).unlink(missing_ok=True)
            for name in list(dirnames):
                if name.startswith(_TRASH_PREFIX):
                    shutil.rmtree(Path(dirpath, name), ignore_errors=True)
                    dirnames.remove(name)

    def close(self) -> None:
        """Release the lock (idempotent)."""
        self._lock.release()

    @property
    def closed(self) -> bool:
        return not self._lock.held

    def _check_open(self) -> None:
        if self.closed:
            raise ProxyselError(f"run folder {self.path} was closed")

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}{', closed' if self.closed else ''})"

    # ---- selections ----------------------------------------------------------------------------

    def selection_dir(self, name: str, create: bool = True) -> Path:
        """``RUN/selections/<name>/`` (made if missing with ``create``); UsageError for unsafe names."""
        folder = self.selection_folder(name)
        if create:
            self._check_open()
            folder.mkdir(parents=True, exist_ok=True)
            self._inside(folder, "selection folder")  # a symlink may have appeared
        return folder

    def write_selection(self, name: str, table: pa.Table, meta: dict[str, Any],
                        write_records: Any) -> Path:
        """Write selection ``name``: the records (``write_records(folder) -> path``, in the input's
        layout), ``selection.parquet`` (``table``) and, last, ``meta.json`` (``meta`` plus the records
        file name), so that a selection with a meta.json is complete. Returns the folder."""
        folder = self.selection_dir(name)
        for old_file in folder.glob("selected.*"):
            old_file.unlink()
        path = Path(write_records(folder))
        atomic_write_parquet(folder / SELECTION_TABLE, table)
        # what `proxysel verify` checks the files against (meta.json is written last)
        digests = {p.name: file_sha256(p) for p in (path, folder / SELECTION_TABLE)}
        atomic_write_json(folder / SELECTION_META, {**meta, "file": path.name, "sha256": digests})
        return folder

    # ---- manifest ------------------------------------------------------------------------------

    def _write_manifest(self) -> None:
        atomic_write_json(self.manifest_path, self._manifest)

    def update_manifest(self, **fields: Any) -> None:
        """Set top-level manifest fields (e.g. ``config=...``, ``skipped_records=[...]``) and save.

        ``stages`` is refused: use ``record_stage``.
        """
        self._check_open()
        if "stages" in fields:
            raise ValueError("update the stages of the manifest with record_stage(name, info)")
        new = dict(self._manifest)
        new.update(to_jsonable(fields))
        self._manifest = new
        self._write_manifest()

    def record_stage(self, name: str, info: dict[str, Any]) -> None:
        """Set ``manifest["stages"][name] = info`` and save."""
        self._check_open()
        check_name(name, "stage name")
        new = copy.deepcopy(self._manifest)
        new["stages"][name] = to_jsonable(info)
        self._manifest = new
        self._write_manifest()

    def _forget_stage(self, name: str) -> None:
        if name in self._manifest["stages"]:
            new = copy.deepcopy(self._manifest)
            del new["stages"][name]
            self._manifest = new
            self._write_manifest()

    # ---- stages --------------------------------------------------------------------------------

    def stage(self, name: str, fingerprint: dict[str, Any], overwrite: bool | None = None) -> Stage:
        """Open stage ``name`` for ``fingerprint`` (a JSON-able dict: data fingerprint, model, params).

        - no such stage yet: it is created (``fingerprint.json`` written, manifest status "running");
        - same fingerprint: it is resumed (finished shards and COMPLETE are kept);
        - different fingerprint: RunConflictError listing the differing keys, unless ``overwrite``
          (default: the run's) is set, in which case the old stage is removed and the returned
          Stage has ``overwritten=True`` so the caller can invalidate what depended on it.

        Fingerprints are compared as canonical JSON, so tuples equal lists and NaN equals None.
        """
        self._check_open()
        check_name(name, "stage name")
        overwrite = self.overwrite if overwrite is None else overwrite
        fingerprint = to_jsonable(fingerprint)
        if not isinstance(fingerprint, dict):
            raise TypeError(f"a stage fingerprint must be a dict, got {type(fingerprint).__name__}")
        folder = self._inside(self.path / "stages" / name, "stage folder")
        fp_path = folder / FINGERPRINT
        previous = None
        if folder.exists():
            try:
                previous = json.loads(fp_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                previous = None  # died before its fingerprint was written: nothing in it is trustworthy
                self._remove_stage_folder(folder)
        if previous is not None and dumps_json(previous) != dumps_json(fingerprint):
            if not overwrite:
                diff = "\n".join(f"  {line}" for line in fingerprint_diff(previous, fingerprint))
                raise RunConflictError(
                    f"stage '{name}' in run folder {self.path} was computed with a different fingerprint:\n"
                    f"{diff}\npass --overwrite to recompute it (its results will be replaced), "
                    f"or choose another --out folder.")
            self.remove_stage(name)
            stage = Stage(self, name, fingerprint, overwritten=True, previous_fingerprint=previous)
        elif previous is not None:
            return Stage(self, name, fingerprint)
        else:
            stage = Stage(self, name, fingerprint)
        folder.mkdir(parents=True)
        atomic_write_json(fp_path, fingerprint)
        self.record_stage(name, {"fingerprint": fingerprint, "status": "running", "started": _now_iso()})
        return stage

    def remove_stage(self, name: str) -> bool:
        """Delete stage ``name`` (folder and manifest entry); returns whether it existed."""
        self._check_open()
        check_name(name, "stage name")
        folder = self._inside(self.path / "stages" / name, "stage folder")
        existed = folder.exists() or name in self._manifest["stages"]
        self._forget_stage(name)
        if folder.exists():
            self._remove_stage_folder(folder)
        return existed

    def _remove_stage_folder(self, folder: Path) -> None:
        # Rename first (atomic), so a crash mid-delete never leaves a half-stage that looks valid.
        trash = folder.parent / f"{_TRASH_PREFIX}{folder.name}.{secrets.token_hex(6)}"
        os.replace(folder, trash)
        shutil.rmtree(trash)

    # ---- integrity -----------------------------------------------------------------------------

    @staticmethod
    def _stat_key(path: Path, marker: Path | None, sha256: str | None) -> tuple[Any, ...] | None:
        """What a check of ``path`` depends on: its size, mtime and inode, and the marker's (or the
        recorded sha256); None if ``path`` or ``marker`` is missing."""
        try:
            st = path.stat()
            mst = marker.stat() if marker is not None else None
        except FileNotFoundError:
            return None
        extra = (mst.st_size, mst.st_mtime_ns, mst.st_ino) if mst is not None else (sha256,)
        return (st.st_size, st.st_mtime_ns, st.st_ino, *extra)

    def check_file(self, path: Path, *, marker: Path | None = None, sha256: str | None = None,
                   size: int | None = None, consequence: str | None = None) -> str | None:
        """None if ``path`` holds the bytes its ``.done`` ``marker`` (or the recorded ``sha256``,
        of ``size`` bytes) vouches for; else the problem, in words.

        The file is hashed once per process: the result is kept for as long as the file's (and
        the marker's) size, mtime and inode stay the same. consequence: what the caller does about
        a problem; when given, the first time a problem is found it is logged as a warning that
        names the file, e.g. "RUN/stages/loss/shard-00000.parquet is truncated (...): it is
        treated as not done and computed again".
        """
        key = self._stat_key(path, marker, sha256)
        cached = self._checked.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        if key is None and marker is not None and not marker.is_file():
            problem: str | None = f"its marker {marker.name} is missing"
        elif marker is not None:
            problem = marker_problem(path, marker)
        else:
            problem = digest_problem(path, sha256, size)
        self._checked[path] = (key, problem)
        if problem is not None and consequence is not None and (cached is None or cached[1] != problem):
            log.warning("%s %s: %s", path, problem, consequence)
        return problem

    def _vouch(self, path: Path, *, marker: Path | None = None, sha256: str | None = None) -> None:
        """Remember that ``path`` was just written with the bytes its marker (or ``sha256``) records."""
        key = self._stat_key(path, marker, sha256)
        if key is not None:
            self._checked[path] = (key, None)

    def write_marked(self, path: Path, table: pa.Table, *, unchanged_ok: bool = False,
                     info: Mapping[str, Any] | None = None) -> Path:
        """Write ``table`` to the Parquet file ``path``, then its ``.done`` marker (bytes, rows, sha256,
        and the JSON-able ``info``, whose keys must not be those).

        unchanged_ok: leave ``path`` and its marker untouched (mtime included) when they are intact
        and the new bytes are the same.
        """
        if info and set(info) & set(MARKER_KEYS):
            raise ValueError(f"marker info may not set {sorted(set(info) & set(MARKER_KEYS))}")
        self._check_open()
        marker = Stage.marker_of(path)
        state: dict[str, Any] = {}

        def record(tmp: Path) -> bool:
            state.update(sha256=file_sha256(tmp), bytes=tmp.stat().st_size)
            same = unchanged_ok and (read_json(marker) or {}).get("sha256") == state["sha256"]
            state["keep"] = same and self.check_file(path, marker=marker,
                                                     consequence="it is written again") is None
            return not state["keep"]

        atomic_write_parquet(path, table, before_replace=record)
        if not state["keep"]:
            atomic_write_json(marker, {"bytes": state["bytes"], "rows": table.num_rows,
                                       "sha256": state["sha256"], **(info or {})})
            self._vouch(path, marker=marker)
        return path

    # ---- scores --------------------------------------------------------------------------------

    def read_scores(self) -> pa.Table | None:
        """``scores.parquet`` as a table, or None if no signal was stored yet.

        A scores.parquet that does not match the sha256 the manifest records (damaged, truncated,
        emptied or deleted) is rebuilt from the stages that were merged into it, with a warning.
        """
        record = self._manifest.get("scores")
        recorded = record.get("sha256") if isinstance(record, dict) else None
        if recorded is not None:
            problem = self.check_file(self.scores_path, sha256=recorded, size=record.get("bytes"),
                                      consequence="it is rebuilt from the stages")
            if problem is not None:
                return self._rebuild_scores(problem)
        if not self.scores_path.exists():
            return None
        try:
            return pq.read_table(self.scores_path)
        except (OSError, pa.ArrowException) as err:  # only a file that no manifest entry vouches for
            raise ProxyselError(f"{self.scores_path} is unreadable ({err}), and the manifest records no "
                                f"stages to rebuild it from (it was written by an older proxysel): delete it "
                                f"and run the score and train-proxy commands again (their finished shards "
                                f"are reused)") from None

    def merge_scores(self, table: pa.Table, *, source: str | None = None) -> pa.Table:
        """Merge ``table`` (an ``id`` column + signal columns) into ``scores.parquet``; returns the result.

        - Rows are matched by id. Ids already stored keep their order; new ids are appended in the
          order of ``table``.
        - A column of ``table`` replaces the stored column of that name *entirely*: stored ids
          missing from ``table`` get null there (no mix of old and new values in one column).
        - Stored columns not in ``table`` are kept (null for the appended ids).
        - Columns are put in SCORE_COLUMNS order, then any others alphabetically.

        source: the stage whose table this is (``Stage.merge_scores`` passes it); the manifest then
        records the merge so that a rebuild can replay it. Columns merged without a source cannot
        be rebuilt (the manifest lists them as ``unstaged_columns``).

        Raises ValueError if ``table`` has no ``id`` column, non-string ids, or duplicate ids.
        """
        self._check_open()
        new = _check_ids(table, "merge_scores")
        merged = _canonical_order(_merge_tables(self.read_scores(), new))
        record = dict(self._manifest.get("scores") or {})
        unstaged = set(record.pop("unstaged_columns", None) or [])
        if source is None:
            unstaged |= set(new.column_names) - {"id"}
        else:
            check_name(source, "stage name")
            unstaged -= set(new.column_names)
            # Replaying the stages in the order of their first merge and then of their last one gives
            # the same rows in the same order (only first merges add ids) and the same columns (the
            # last merge of a column wins): the same table as the whole history of merges.
            first = list(record.get("first") or [])
            record["first"] = first if source in first else [*first, source]
            record["last"] = [s for s in record.get("last") or [] if s != source] + [source]
        if unstaged:
            record["unstaged_columns"] = sorted(unstaged)
        self._write_scores(merged, record)
        return merged

    def _write_scores(self, table: pa.Table, record: dict[str, Any]) -> None:
        def note_digest(tmp: Path) -> bool:
            # The manifest first: a crash before the rename leaves a mismatch, which the next read
            # detects and repairs, never a scores.parquet that no record vouches for.
            self.update_manifest(scores={**record, "sha256": file_sha256(tmp), "bytes": tmp.stat().st_size,
                                         "rows": table.num_rows})
            return True

        atomic_write_parquet(self.scores_path, table, before_replace=note_digest)
        self._vouch(self.scores_path, sha256=self._manifest["scores"]["sha256"])

    def _rebuild_scores(self, problem: str) -> pa.Table:
        """Write scores.parquet again from the stages recorded in ``manifest["scores"]``; returns it.

        All or nothing: if a stage cannot be read back intact (its own files are damaged too), this
        raises ProxyselError naming it rather than write a scores.parquet that lacks its columns;
        rerunning that stage's command recomputes its files, after which the rebuild succeeds.
        """
        record = dict(self._manifest.get("scores") or {})
        order = [*(record.get("first") or []), *(record.get("last") or [])]
        tables, failed = {}, []
        for name in dict.fromkeys(order):
            try:
                tables[name] = _check_ids(self._replay_table(name), f"stage {name}")
            except (ProxyselError, ValueError, OSError, pa.ArrowException) as err:
                failed.append(f"stage '{name}': {err}")
        if failed or not order:
            why = "; ".join(failed) or "no stage was merged into it (its columns were added directly)"
            raise ProxyselError(f"{self.scores_path} {problem}, and it cannot be rebuilt: {why}. Rerun the "
                                f"command that made each stage named (it recomputes its damaged files and "
                                f"then rebuilds scores.parquet), or start a new run folder")
        merged = None
        for name in order:
            merged = _merge_tables(merged, tables[name])
        merged = _canonical_order(merged)
        lost = [c for c in record.pop("unstaged_columns", None) or [] if c not in merged.column_names]
        old_sha = record.get("sha256")
        self._write_scores(merged, record)
        if self._manifest["scores"]["sha256"] == old_sha:
            log.info("rebuilt %s from the stages %s: the same bytes as recorded", self.scores_path,
                     ", ".join(tables))
        elif lost:
            log.warning("the rebuilt %s lacks the columns %s, which were added outside a stage; the command "
                        "that added them adds them again", self.scores_path, ", ".join(lost))
        else:
            log.warning("the rebuilt %s differs from the one the manifest recorded: a stage it was made from "
                        "was recomputed since", self.scores_path)
        return merged

    def _replay_table(self, name: str) -> pa.Table:
        """The table stage ``name`` merged into scores.parquet: its derived table, else its shards.

        Raises ProxyselError if they cannot be read back intact.
        """
        check_name(name, "stage name")
        folder = self.path / "stages" / name
        derived = folder / DERIVED
        if Stage.marker_of(derived).is_file():
            problem = self.check_file(derived, marker=Stage.marker_of(derived))
            if problem is not None:
                raise ProxyselError(f"{derived} {problem}")
            return pq.read_table(derived)
        entry = self._manifest["stages"].get(name) or {}
        shards = entry.get("shards")
        count = shards if isinstance(shards, int) and not isinstance(shards, bool) else None
        return Stage(self, name, entry.get("fingerprint") or {}).read_shards(count)

    # ---- embeddings ----------------------------------------------------------------------------

    def write_embeddings(self, ids: list[str], array: np.ndarray, model: str, *,
                         stage: str | None = None) -> None:
        """``write_vectors("embedding", ...)``: the sentence embeddings of the ``embedding`` signal."""
        self.write_vectors("embedding", ids, array, model, stage=stage)

    def write_vectors(self, name: str, ids: list[str], array: np.ndarray, model: str, *,
                      stage: str | None = None) -> None:
        """Store vector set ``name``: ``array`` float32 (n_examples, dim); row i belongs to ``ids[i]``.

        The file (``vectors_file(name)``) gets columns ``id`` (string) and ``embedding`` (fixed-size
        list of float32, size dim); ``model`` and ``dim`` go into its schema metadata and its manifest
        record (``vector_record``), with the file's sha256 and size and ``stage``: the stage whose
        shards hold the same vectors, from which a damaged file is rebuilt. Other float dtypes are
        cast to float32.
        """
        self._check_open()
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[1] < 1:
            raise ValueError("embeddings must be a 2-d array (n_examples, dim >= 1), "
                             f"got shape {array.shape}")
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"embeddings must be floating point, got {array.dtype}")
        if len(ids) != array.shape[0]:
            raise ValueError(f"{len(ids)} ids for {array.shape[0]} embedding rows")
        n, dim = array.shape
        flat = pa.array(np.ascontiguousarray(array, dtype=np.float32).reshape(-1), type=pa.float32())
        table = pa.table({"id": pa.array(list(ids), type=pa.string()),
                          "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)})
        _check_ids(table, f"write_vectors({name!r})")
        table = table.replace_schema_metadata({"proxysel.model": str(model), "proxysel.dim": str(dim)})
        record = {"model": str(model), "dim": dim, "n": n, **({"stage": stage} if stage else {})}
        path = self.vectors_path(name)

        def note_digest(tmp: Path) -> bool:
            record.update(sha256=file_sha256(tmp), bytes=tmp.stat().st_size)
            self._set_vector_record(name, record)
            return True

        atomic_write_parquet(path, table, before_replace=note_digest)
        self._vouch(path, sha256=record["sha256"])

    def _set_vector_record(self, name: str, record: dict[str, Any]) -> None:
        if name == "embedding":  # where every manifest since the first version keeps it
            self.update_manifest(embeddings=record)
        else:
            self.update_manifest(vectors={**(self._manifest.get("vectors") or {}), name: record})

    def read_vectors(self, name: str) -> tuple[list[str], np.ndarray]:
        """``(ids, array)`` of vector set ``name`` (see ``RunFolder.read_vectors``).

        A file that does not match the sha256 its manifest record holds is rebuilt from the stage's
        shards first, with a warning. Raises ProxyselError if the set was not stored.
        """
        record = self.vector_record(name)
        if record.get("sha256"):
            problem = self.check_file(self.vectors_path(name), sha256=record["sha256"],
                                      size=record.get("bytes"),
                                      consequence=f"it is rebuilt from the {record.get('stage') or name} "
                                                  "stage")
            if problem is not None:
                self._rebuild_vectors(name, problem, record)
        return super().read_vectors(name)

    def _rebuild_vectors(self, name: str, problem: str, record: dict[str, Any]) -> None:
        path = self.vectors_path(name)
        try:
            if not record.get("stage"):
                raise ProxyselError("no stage recorded")
            table = self._replay_table(record["stage"])
        except (ProxyselError, OSError, pa.ArrowException) as err:
            raise ProxyselError(f"{path} {problem}, and it cannot be rebuilt ({err}); run "
                                f"`proxysel score DATA --signals {name} --out {self.path}` again") from None
        ids, array = embedding_matrix(table)
        self.write_vectors(name, ids, array, model=record.get("model", "unknown"), stage=record["stage"])
        if self.vector_record(name).get("sha256") != record["sha256"]:
            log.warning("the rebuilt %s differs from the one the manifest recorded (its stage changed since)",
                        path)


def embedding_matrix(table: pa.Table) -> tuple[list[str], np.ndarray]:
    """``(ids, array)`` of a table with an ``id`` column and one vector column (``embedding``, or a
    vector signal's own, a fixed-size list of floats): array float32 (n_rows, dim), row i belongs to
    ``ids[i]``."""
    name = ("embedding" if "embedding" in table.column_names
            else next(c for c in table.column_names if c != "id"))
    col = table.column(name).combine_chunks()
    dim = col.type.list_size
    array = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)
    return table.column("id").to_pylist(), array


def _merge_tables(old: pa.Table | None, new: pa.Table) -> pa.Table:
    """``new`` merged into ``old`` by id, as ``Run.merge_scores`` describes (column order aside)."""
    if old is None:
        return new
    old_ids = old.column("id").combine_chunks()
    new_ids = new.column("id").combine_chunks()
    added = new_ids.filter(pc.invert(pc.is_in(new_ids, value_set=old_ids)))
    ids = pa.concat_arrays([old_ids, added.cast(old_ids.type)])
    where = pc.index_in(ids, value_set=new_ids)  # row of each id in ``new``, or null
    columns = {"id": ids}
    for name in old.column_names:
        if name != "id" and name not in new.column_names:
            col = old.column(name).combine_chunks()
            columns[name] = pa.concat_arrays([col, pa.nulls(len(added), col.type)])
    for name in new.column_names:
        if name != "id":
            columns[name] = new.column(name).combine_chunks().take(where)
    return pa.table(columns)


def _check_ids(table: pa.Table, what: str) -> pa.Table:
    if "id" not in table.column_names:
        raise ValueError(f"{what}: the table needs an 'id' column, got {table.column_names}")
    if table.column_names.count("id") > 1 or len(set(table.column_names)) != table.num_columns:
        raise ValueError(f"{what}: duplicate column names in {table.column_names}")
    ids = table.column("id")
    if pa.types.is_large_string(ids.type):
        table = table.set_column(table.column_names.index("id"), "id", ids.cast(pa.string()))
        ids = table.column("id")
    if not pa.types.is_string(ids.type):
        raise ValueError(f"{what}: ids must be strings, got {ids.type}")
    if ids.null_count:
        raise ValueError(f"{what}: {ids.null_count} null ids")
    if pc.count_distinct(ids).as_py() != len(ids):
        counts = pc.value_counts(ids)
        dupes = [v["values"] for v in counts.to_pylist() if v["counts"] > 1]
        raise ValueError(f"{what}: duplicate ids {dupes[:10]}")
    return table


def _canonical_order(table: pa.Table) -> pa.Table:
    known = [c for c in SCORE_COLUMNS if c in table.column_names]
    others = sorted(c for c in table.column_names if c not in SCORE_COLUMNS)
    return table.select(known + others).replace_schema_metadata(None)
