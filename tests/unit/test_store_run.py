"""store.run: layout, manifest, stages (resume / conflict / overwrite), scores, embeddings, names."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pytest

import proxysel.store.run as runmod
from proxysel.errors import ProxyselError, RunConflictError, RunLockedError, UsageError
from proxysel.store import SCORE_COLUMNS, Run, check_name

FP = {"data": "ab12cd34", "model": "smollm2-135m", "params": {"epochs": 3, "max_length": 512, "lr": 1e-4}}


@pytest.fixture
def run(tmp_path):
    with Run.open(tmp_path / "run") as r:
        yield r


def _scores(ids, **cols) -> pa.Table:
    return pa.table({"id": pa.array(ids, type=pa.string()), **cols})


# ---- layout and manifest --------------------------------------------------------------------------

def test_open_creates_layout_and_manifest(tmp_path):
    path = tmp_path / "a" / "run"
    with Run.open(path) as run:
        assert {p.name for p in path.iterdir()} == {".lock", "manifest.json", "stages", "selections", "logs"}
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest == run.manifest
        assert manifest["stages"] == {} and manifest["skipped_records"] == []
        assert manifest["created"].endswith("Z")
        assert {"python", "proxysel", "numpy", "pyarrow"} <= set(manifest["packages"])
        assert manifest["proxysel_version"] == manifest["packages"]["proxysel"]
    assert not (path / ".lock").exists()


def test_reopen_keeps_manifest(tmp_path):
    with Run.open(tmp_path / "r") as run:
        run.update_manifest(config={"budget": 0.1}, skipped_records=[{"file": "a.jsonl", "line": 3}])
        created = run.manifest["created"]
    with Run.open(tmp_path / "r") as run:
        assert run.manifest["created"] == created
        assert run.manifest["config"] == {"budget": 0.1}
        assert run.manifest["skipped_records"] == [{"file": "a.jsonl", "line": 3}]


def test_manifest_property_is_a_copy(run):
    run.manifest["stages"]["x"] = 1
    assert run.manifest["stages"] == {}


def test_update_manifest_refuses_stages(run):
    with pytest.raises(ValueError, match="record_stage"):
        run.update_manifest(stages={})


def test_open_refuses_a_foreign_folder_and_a_file(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("x")
    with pytest.raises(UsageError, match="not a proxysel run folder"):
        Run.open(tmp_path / "home")
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        Run.open(tmp_path / "f")
    with pytest.raises(UsageError, match="no run folder"):
        Run.open(tmp_path / "missing", create=False)


def test_open_is_exclusive_and_close_releases(tmp_path):
    run = Run.open(tmp_path / "r")
    with pytest.raises(RunLockedError):
        Run.open(tmp_path / "r")
    run.close()
    run.close()  # idempotent
    with pytest.raises(ProxyselError, match="closed"):
        run.update_manifest(x=1)
    with Run.open(tmp_path / "r"):
        pass


def test_open_removes_leftovers_of_killed_writers(tmp_path):
    with Run.open(tmp_path / "r") as run:
        stage = run.stage("loss", FP)
    (stage.path / ".tmp-shard-00000.parquet.abc123").write_bytes(b"partial")
    (tmp_path / "r" / ".tmp-scores.parquet.def456").write_bytes(b"partial")
    (tmp_path / "r" / "stages" / ".trash-old.123").mkdir()
    with Run.open(tmp_path / "r"):
        leftovers = [p for p in (tmp_path / "r").rglob("*") if p.name.startswith((".tmp-", ".trash-"))]
        assert leftovers == []
        assert (stage.path / "fingerprint.json").exists()


# ---- stages ---------------------------------------------------------------------------------------

def test_stage_shards_in_order_and_complete(run):
    stage = run.stage("loss", FP)
    assert stage.path == run.path / "stages" / "loss"
    assert json.loads((stage.path / "fingerprint.json").read_text()) == FP
    assert run.manifest["stages"]["loss"]["status"] == "running"
    stage.write_shard(1, _scores(["c"], loss=[3.0]))
    assert not stage.shard_done(0) and stage.shard_done(1)
    stage.write_shard(0, _scores(["a", "b"], loss=[1.0, 2.0]))
    assert stage.shards_done() == [0, 1]
    assert stage.read_shards().column("id").to_pylist() == ["a", "b", "c"]
    assert (stage.path / "shard-00000.parquet").exists() and (stage.path / "shard-00000.done").exists()
    assert not stage.complete
    stage.mark_complete({"params": {"epochs": 3}, "timings": {"total_s": 1.5}, "counts": {"examples": 3}})
    assert stage.complete and (stage.path / "COMPLETE").exists()
    entry = run.manifest["stages"]["loss"]
    assert entry["fingerprint"] == FP and entry["status"] == "complete"
    assert entry["counts"] == {"examples": 3} and entry["timings"] == {"total_s": 1.5}
    assert entry["started"] <= entry["completed"]


def test_read_shards_reports_missing_ones(run):
    stage = run.stage("loss", FP)
    with pytest.raises(ProxyselError, match="no finished shards"):
        stage.read_shards()
    stage.write_shard(0, _scores(["a"], loss=[1.0]))
    stage.write_shard(2, _scores(["c"], loss=[1.0]))
    with pytest.raises(ProxyselError, match=r"misses shards \[1\]"):
        stage.read_shards(n_shards=3)


def test_same_fingerprint_resumes(tmp_path):
    with Run.open(tmp_path / "r") as run:
        stage = run.stage("loss", FP)
        stage.write_shard(0, _scores(["a"], loss=[1.0]))
    # compared as canonical JSON: tuples equal lists, numpy ints equal ints
    with Run.open(tmp_path / "r") as run:
        run.stage("x", {"a": (1, 2)})
        assert not run.stage("x", {"a": [1, 2]}).overwritten
        stage = run.stage("loss", {**FP, "params": {**FP["params"], "epochs": np.int64(3)}})
        assert not stage.overwritten
        assert stage.shard_done(0) and not stage.shard_done(1)


def test_crash_between_shard_and_marker_leaves_shard_not_done(tmp_path, monkeypatch):
    table = _scores(["a", "b"], loss=[1.0, 2.0])
    with Run.open(tmp_path / "r") as run:
        stage = run.stage("loss", FP)

        def crash(path, obj):
            raise OSError("killed")

        monkeypatch.setattr(runmod, "atomic_write_json", crash)
        with pytest.raises(OSError):
            stage.write_shard(0, table)
        monkeypatch.undo()
        assert not stage.shard_done(0)
    with Run.open(tmp_path / "r") as run:
        stage = run.stage("loss", FP)
        stage.write_shard(0, table)
        assert stage.read_shards().equals(table)


def test_different_fingerprint_is_refused_with_the_differing_keys(tmp_path):
    with Run.open(tmp_path / "r") as run:
        run.stage("train-proxy", FP).write_shard(0, _scores(["a"], loss=[1.0]))
    changed = {"data": "ab12cd34", "model": "gemma3-270m",
               "params": {"epochs": 5, "max_length": 512, "seed": 1, "lr": 1e-4}}
    with Run.open(tmp_path / "r") as run:
        with pytest.raises(RunConflictError) as err:
            run.stage("train-proxy", changed)
    message = str(err.value)
    assert "stage 'train-proxy'" in message
    assert 'model: "smollm2-135m" -> "gemma3-270m"' in message
    assert "params.epochs: 3 -> 5" in message
    assert "params.seed: (absent) -> 1" in message
    assert "data" not in message.split("fingerprint:")[1].split("pass")[0]  # unchanged keys not listed
    assert "pass --overwrite to recompute it" in message
    assert err.value.exit_code == 2
    with Run.open(tmp_path / "r") as run:  # nothing was touched
        assert run.stage("train-proxy", FP).shard_done(0)


def test_overwrite_removes_the_old_stage(tmp_path):
    with Run.open(tmp_path / "r") as run:
        stage = run.stage("loss", FP)
        stage.write_shard(0, _scores(["a"], loss=[1.0]))
        stage.mark_complete({"counts": {"examples": 1}})
    new_fp = {**FP, "model": "gemma3-270m"}
    with Run.open(tmp_path / "r", overwrite=True) as run:
        stage = run.stage("loss", new_fp)
        assert stage.overwritten and stage.previous_fingerprint == FP
        assert not stage.complete and stage.shards_done() == []
        assert json.loads((stage.path / "fingerprint.json").read_text()) == new_fp
        assert run.manifest["stages"]["loss"] == {"fingerprint": new_fp, "status": "running",
                                                  "started": run.manifest["stages"]["loss"]["started"]}
        assert not run.stage("loss", new_fp).overwritten  # now it resumes
        assert [p.name for p in (run.path / "stages").iterdir()] == ["loss"]  # no trash left


def test_stage_overwrite_argument_overrides_the_runs(run):
    run.stage("loss", FP)
    assert run.stage("loss", {"x": 1}, overwrite=True).overwritten


def test_stage_without_fingerprint_file_is_restarted(run):
    (run.path / "stages" / "loss").mkdir()
    (run.path / "stages" / "loss" / "shard-00000.done").write_text("{}")
    stage = run.stage("loss", FP)
    assert stage.shards_done() == [] and not stage.overwritten


def test_remove_stage(run):
    run.stage("loss", FP)
    assert run.remove_stage("loss") and not run.remove_stage("loss")
    assert run.stages() == [] and "loss" not in run.manifest["stages"]


# ---- scores ---------------------------------------------------------------------------------------

def test_merge_scores_by_id(run):
    assert run.read_scores() is None
    run.merge_scores(_scores(["a", "b", "c"], loss=[1.0, 2.0, 3.0], zeta=[1, 2, 3]))
    # reordered ids, one new id, one stored id missing; "loss" replaced, "ifd" added, "zeta" kept
    merged = run.merge_scores(_scores(["d", "c", "a"], loss=[40.0, 30.0, 10.0], ifd=[0.4, 0.3, 0.1]))
    assert merged.column_names == ["id", "loss", "ifd", "zeta"]
    assert merged.to_pylist() == [
        {"id": "a", "loss": 10.0, "ifd": 0.1, "zeta": 1},
        {"id": "b", "loss": None, "ifd": None, "zeta": 2},
        {"id": "c", "loss": 30.0, "ifd": 0.3, "zeta": 3},
        {"id": "d", "loss": 40.0, "ifd": 0.4, "zeta": None},
    ]
    assert run.read_scores().equals(merged)


def test_merge_scores_column_order(run):
    cols = {name: [1.0] for name in reversed(SCORE_COLUMNS[1:])}
    run.merge_scores(_scores(["a"], b_extra=[1], a_extra=[2], **cols))
    assert run.read_scores().column_names == list(SCORE_COLUMNS) + ["a_extra", "b_extra"]


def test_merge_scores_keeps_list_columns_and_nan(run):
    run.merge_scores(_scores(["a", "b"], ppl_epoch=pa.array([[3.0, 2.0], [5.0, 4.0]]),
                             lp=[float("nan"), 0.5]))
    merged = run.merge_scores(_scores(["b", "c"], truncated=[False, True]))
    assert merged.column("ppl_epoch").to_pylist() == [[3.0, 2.0], [5.0, 4.0], None]
    assert np.isnan(merged.column("lp").to_pylist()[0])
    assert merged.column("truncated").to_pylist() == [None, False, True]


def test_merge_scores_bytes_are_deterministic(tmp_path):
    def build(path):
        with Run.open(path) as run:
            run.merge_scores(_scores(["b", "a"], loss=[2.0, 1.0]))
            run.merge_scores(pa.concat_tables([_scores(["c"], ifd=[0.3]), _scores(["a"], ifd=[0.1])]))
        return (path / "scores.parquet").read_bytes()

    assert build(tmp_path / "r1") == build(tmp_path / "r2")


def test_merge_scores_rejects_bad_ids(run):
    with pytest.raises(ValueError, match="'id' column"):
        run.merge_scores(pa.table({"loss": [1.0]}))
    with pytest.raises(ValueError, match=r"duplicate ids \['a'\]"):
        run.merge_scores(_scores(["a", "b", "a"], loss=[1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="strings"):
        run.merge_scores(pa.table({"id": [1, 2], "loss": [1.0, 2.0]}))
    assert run.read_scores() is None


# ---- embeddings -----------------------------------------------------------------------------------

def test_embeddings_round_trip(run):
    array = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    ids = [f"ex{i}" for i in range(5)]
    run.write_embeddings(ids, array, model="minilm")
    got_ids, got = run.read_embeddings()
    assert got_ids == ids and got.dtype == np.float32 and np.array_equal(got, array)
    import hashlib

    import pyarrow.parquet as pq

    data = run.embeddings_path.read_bytes()
    assert run.manifest["embeddings"] == {"model": "minilm", "dim": 8, "n": 5, "bytes": len(data),
                                          "sha256": hashlib.sha256(data).hexdigest()}

    schema = pq.read_schema(run.embeddings_path)
    assert schema.field("embedding").type == pa.list_(pa.float32(), 8)
    assert schema.metadata[b"proxysel.model"] == b"minilm"


def test_embeddings_validation(run):
    with pytest.raises(ProxyselError, match="no embeddings"):
        run.read_embeddings()
    with pytest.raises(ValueError, match="2-d"):
        run.write_embeddings(["a"], np.zeros(3, np.float32), "m")
    with pytest.raises(ValueError, match="2 ids for 3"):
        run.write_embeddings(["a", "b"], np.zeros((3, 2), np.float32), "m")
    with pytest.raises(ValueError, match="duplicate ids"):
        run.write_embeddings(["a", "a"], np.zeros((2, 2), np.float32), "m")


# ---- names and path safety ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", "a/b", "../x", "..", ".", "a\\b", ".hidden", "a..b", "x\x00y",
                                  "tab\tname", "new\nline", "\x7f", " lead", "trail ", "/abs", "x" * 201])
def test_unsafe_selection_names_are_refused(run, name):
    with pytest.raises(UsageError, match="invalid selection name"):
        run.selection_dir(name)
    assert [p.name for p in (run.path / "selections").iterdir()] == []


@pytest.mark.parametrize("name", ["lp_app-0.1", "s2l_seed0", "top 10%", "düsseldorf", "a.b"])
def test_safe_selection_names(run, name):
    folder = run.selection_dir(name)
    assert folder == run.path / "selections" / name and folder.is_dir()
    assert run.selections() == [name]


def test_selection_symlink_out_of_the_run_is_refused(run, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, run.path / "selections" / "evil")
    with pytest.raises(UsageError, match="outside the run folder"):
        run.selection_dir("evil")


def test_unsafe_stage_names_are_refused(run):
    with pytest.raises(UsageError, match="invalid stage name"):
        run.stage("../../etc", FP)


def test_check_name_returns_the_name():
    assert check_name("ok-name") == "ok-name"
    with pytest.raises(UsageError):
        check_name(None)  # type: ignore[arg-type]
