"""RunFolder's read-only readers of a stage's own files: stage_folder, read_stage_shard, recorded_path."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from proxysel.errors import ProxyselError, UsageError
from proxysel.store import Run, RunFolder


@pytest.fixture
def folder(tmp_path):
    """A run with stage ``loss`` of two finished shards (rows 0-2 and 3-4); read without the lock."""
    with Run.open(tmp_path / "run") as run:
        stage = run.stage("loss", {"data": "ab"})
        stage.write_shard(0, pa.table({"id": ["a", "b", "c"], "n_tokens": [3, 4, 5]}))
        stage.write_shard(1, pa.table({"id": ["d", "e"], "n_tokens": [6, 7]}))
        shard = stage.shard_path(1)
    return RunFolder.at(tmp_path / "run"), shard


def test_read_stage_shard_reads_what_was_written(folder):
    run, _ = folder
    assert run.read_stage_shard("loss", 0).to_pydict() == {"id": ["a", "b", "c"], "n_tokens": [3, 4, 5]}
    assert run.read_stage_shard("loss", 1, columns=["n_tokens"]).to_pydict() == {"n_tokens": [6, 7]}
    assert run.stage_folder("loss") == run.path / "stages" / "loss"


@pytest.mark.parametrize("how", ["overwrite", "truncate", "unmarked"])
def test_a_damaged_or_unfinished_shard_is_named_not_read(folder, how):
    run, shard = folder
    if how == "unmarked":  # written but its .done marker never was: not finished
        shard.with_suffix(".done").unlink()
    else:
        data = shard.read_bytes()
        shard.write_bytes(data[: len(data) // 2] if how == "truncate"
                          else data[:10] + bytes(16) + data[26:])
    with pytest.raises(ProxyselError, match=rf"{shard.name} .*run the command that made stage 'loss' again"):
        run.read_stage_shard("loss", 1)
    assert run.read_stage_shard("loss", 0).num_rows == 3  # the other shard is fine


def test_unsafe_stage_names_and_paths_are_refused(folder, tmp_path):
    run, _ = folder
    for bad in ("../x", "", "a/b"):
        with pytest.raises(UsageError):
            run.stage_folder(bad)
    with pytest.raises(ValueError):
        run.read_stage_shard("loss", -1)
    assert run.recorded_path("stages/loss/history.jsonl", "history") == run.path / "stages/loss/history.jsonl"
    for bad in (None, "", 3, "/etc/passwd"):
        with pytest.raises(ProxyselError, match="not a path relative to the run folder"):
            run.recorded_path(bad, "history")
    with pytest.raises(UsageError, match="outside the run folder"):
        run.recorded_path("../elsewhere.jsonl", "history")
    os.symlink(tmp_path, run.path / "link")
    with pytest.raises(UsageError, match="outside the run folder"):
        run.recorded_path("link/history.jsonl", "history")
