"""``proxysel verify RUN``: check every file of a run folder that something vouches for.

What is checked, without writing anything but the run lock:

- every ``.done`` marker in ``stages/<stage>/`` against its Parquet file (sha256), and that a
  complete stage has all the shards its manifest entry counts;
- each stage's ``fingerprint.json`` (it must parse);
- ``scores.parquet`` and ``embeddings.parquet`` against the sha256 the manifest records (files
  written by an older proxysel, which recorded none, only have to parse);
- every selection's files against the sha256 its ``meta.json`` records, where it records them.

The report says what is damaged and what repairs it. Repairs happen in the ordinary commands:
a rerun computes a damaged shard again, and the next command that reads the scores or
embeddings rebuilds them from the stages (``store.run``). ``repair_run`` (``verify --repair``)
does that rebuild at once; a damaged shard needs its model, so only its command can redo it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import UsageError
from .digest import digest_problem, marker_problem, read_json
from .lock import RunLock
from .run import COMPLETE, FINGERPRINT, MANIFEST, SCORES, SELECTION_META, Run, RunFolder

#: How each kind of damage is repaired (``{stage}``, ``{name}``: the stage or selection).
REPAIR = {
    "shard": "run the command that made stage '{stage}' again: it computes this shard again",
    "fingerprint": "the next run of the command that made stage '{stage}' recomputes the whole stage",
    "scores": "`proxysel verify RUN --repair`, or the next command that reads the scores (score, "
              "train-proxy, select, bench, run), rebuilds it from the stages",
    "vectors": "`proxysel verify RUN --repair`, or the next command that reads these vectors (select "
               "with clusters, score --signals density, an rds selection), rebuilds it from the stage "
               "that made them",
    "legacy": "delete it and run the commands that wrote it again (finished shards are reused)",
    "manifest": "restore it from a copy, or start a new run folder: without it nothing else can be checked "
                "against what was written",
    "selection": "run `proxysel select` for selection '{name}' again with --overwrite",
}


@dataclass(frozen=True)
class Damage:
    """One damaged or missing file: ``path``, what is wrong with it, and what repairs it."""

    path: Path
    problem: str
    repair: str


@dataclass
class VerifyReport:
    """What ``verify_run`` found. checked: files compared with a recorded sha256, or parsed;
    unrecorded: files no sha256 vouches for (scores and embeddings among them are parsed)."""

    run: Path
    checked: int = 0
    damaged: list[Damage] = field(default_factory=list)
    unrecorded: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.damaged

    def format(self) -> str:
        """The report as text, one damaged file per entry with its repair."""
        head = f"{self.run}: {self.checked:,} files checked, "
        lines = [head + ("clean" if self.clean else f"{len(self.damaged):,} damaged")]
        for d in self.damaged:
            lines += [f"  damaged: {d.path} {d.problem}", f"    repair: {d.repair}"]
        if self.unrecorded:
            names = ", ".join(str(p.relative_to(self.run)) for p in self.unrecorded[:5])
            more = f" and {len(self.unrecorded) - 5:,} more" if len(self.unrecorded) > 5 else ""
            lines.append("  not verifiable (no recorded sha256; written by an older proxysel): "
                         f"{names}{more}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def verify_run(run_dir: str | os.PathLike[str]) -> VerifyReport:
    """Check the run folder ``run_dir`` (see the module docstring) and return what was found.

    Holds the run lock while it reads, so no writer changes files under it (RunLockedError if a
    live process has the run open). Raises UsageError if ``run_dir`` is not a run folder.
    """
    path = Path(run_dir)
    if not (path / MANIFEST).is_file():
        raise UsageError(f"{path} is not a proxysel run folder (no {MANIFEST})")
    report = VerifyReport(path)
    lock = RunLock(path)
    try:
        lock.acquire()
    except OSError:  # a read-only copy of a run (EROFS, EACCES): nobody can be writing to it
        report.notes.append("checked without the run lock (the folder is not writable)")
    try:
        manifest = _manifest(report)
        _stages(report, manifest)
        _recorded(report, path / SCORES, manifest.get("scores"), "scores")
        folder = RunFolder(path)
        for name in _vector_sets(folder, manifest):
            _recorded(report, folder.vectors_path(name), folder.vector_record(name), "vectors")
        _selections(report)
    finally:
        lock.release()
    return report


def _manifest(report: VerifyReport) -> dict:
    report.checked += 1
    path = report.run / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(manifest, dict):
            return manifest
        problem = "is not a JSON object"
    except (OSError, ValueError) as err:
        problem = f"is unreadable ({err})"
    report.damaged.append(Damage(path, problem, REPAIR["manifest"]))
    return {}


def _stages(report: VerifyReport, manifest: dict) -> None:
    entries = manifest.get("stages") if isinstance(manifest.get("stages"), dict) else {}
    folder = report.run / "stages"
    stages = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if folder.is_dir() else []
    for stage in stages:
        repair = REPAIR["shard"].format(stage=stage.name)
        report.checked += 1
        if read_json(stage / FINGERPRINT) is None:
            report.damaged.append(Damage(stage / FINGERPRINT, "is missing or unreadable",
                                         REPAIR["fingerprint"].format(stage=stage.name)))
        for marker in sorted(stage.glob("*.done")):
            report.checked += 1
            problem = marker_problem(marker.with_suffix(".parquet"), marker)
            if problem is not None:
                report.damaged.append(Damage(marker.with_suffix(".parquet"), problem, repair))
        entry = entries.get(stage.name) if isinstance(entries.get(stage.name), dict) else {}
        count = entry.get("shards")
        if (stage / COMPLETE).is_file() and isinstance(count, int) and not isinstance(count, bool):
            for k in range(count):
                shard = stage / f"shard-{k:05d}.parquet"
                if not shard.with_suffix(".done").is_file():
                    report.damaged.append(Damage(shard, f"is missing (or its marker is), though stage "
                                                        f"'{stage.name}' is complete with {count} shards",
                                                 repair))


def _vector_sets(folder: RunFolder, manifest: dict) -> list[str]:
    """The vector sets the folder holds or the manifest records (a recorded one may be gone)."""
    recorded = ["embedding"] if isinstance(manifest.get("embeddings"), dict) else []
    recorded += list(manifest.get("vectors") or {}) if isinstance(manifest.get("vectors"), dict) else []
    return list(dict.fromkeys([*folder.vector_sets(), *recorded]))


def _recorded(report: VerifyReport, path: Path, record: object, kind: str) -> None:
    """scores.parquet or embeddings.parquet against its manifest ``record``."""
    sha = record.get("sha256") if isinstance(record, dict) else None
    if sha is None:
        if path.is_file():
            report.checked += 1
            report.unrecorded.append(path)
            _parses(report, path)
        return
    report.checked += 1
    problem = digest_problem(path, sha, record.get("bytes"))
    if problem is not None:
        report.damaged.append(Damage(path, problem, REPAIR[kind]))


def _parses(report: VerifyReport, path: Path) -> None:
    try:
        pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        report.damaged.append(Damage(path, f"is unreadable ({err})", REPAIR["legacy"]))


def _selections(report: VerifyReport) -> None:
    folder = report.run / "selections"
    for sel in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if folder.is_dir() else []:
        repair = REPAIR["selection"].format(name=sel.name)
        meta = read_json(sel / SELECTION_META)
        if meta is None:
            if (sel / SELECTION_META).exists():
                report.checked += 1
                report.damaged.append(Damage(sel / SELECTION_META, "is unreadable", repair))
            continue
        report.checked += 1
        hashes = meta.get("sha256") if isinstance(meta.get("sha256"), dict) else {}
        for name, sha in sorted(hashes.items()):
            report.checked += 1
            problem = digest_problem(sel / name, sha if isinstance(sha, str) else None, source="meta.json")
            if problem is not None:
                report.damaged.append(Damage(sel / name, problem, repair))
        if not hashes:
            report.unrecorded += sorted(p for p in sel.iterdir() if p.is_file() and p.name != SELECTION_META)


def repair_run(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Rebuild a damaged scores.parquet and embeddings.parquet from the stages now, as the next command
    that reads them would (with the same warnings); returns the files rebuilt.

    Raises ProxyselError if one cannot be rebuilt (a stage it was made from is damaged too: rerun
    that stage's command, which recomputes its shards and rebuilds the file).
    """
    path = Path(run_dir)
    damaged = {d.path for d in verify_run(path).damaged}
    rebuilt = []
    with Run.open(path, create=False) as run:
        if run.scores_path in damaged:
            run.read_scores()
            rebuilt.append(run.scores_path)
        for name in run.vector_sets():
            if run.vectors_path(name) in damaged:
                run.read_vectors(name)
                rebuilt.append(run.vectors_path(name))
    return rebuilt
