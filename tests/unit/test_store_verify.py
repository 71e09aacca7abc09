"""Verified resumes (store.run, store.verify): a damaged shard is not done, a damaged scores.parquet or
embeddings.parquet is rebuilt from the stages with the same bytes, and `proxysel verify` names what is
damaged (exit 0 clean, 2 damaged). Built with the store API alone, no model."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import proxysel.store.digest as digest
import proxysel.store.run as runmod
from proxysel.cli.main import main
from proxysel.errors import ProxyselError
from proxysel.store import Run
from proxysel.store.verify import verify_run

FP = {"data": "ab12", "model": "m"}


def damage(path: Path, how: str) -> None:
    """Damage ``path`` in place: 16 bytes overwritten in the middle, cut to half, emptied, or deleted."""
    data = path.read_bytes()
    if how == "overwrite":
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes(16) + data[mid + 16:])
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()


def _table(ids: list[str], **cols: list) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.string()), **cols})


def loss_shards(n_shards: int = 3, rows: int = 4) -> list[pa.Table]:
    rng = np.random.default_rng(0)
    return [_table([f"x{k * rows + i:02d}" for i in range(rows)], n_tokens=list(rng.integers(5, 50, rows)),
                   loss=list(rng.normal(2, 0.5, rows))) for k in range(n_shards)]


def proxy_table() -> pa.Table:
    ids = [f"x{i:02d}" for i in range(6, 16)]
    return _table(ids, n_tokens=list(range(10)), lp=[i / 10 for i in range(10)],
                  ppl_epoch=[[3.0, 2.0 - i / 10] for i in range(10)])


def build(path: Path) -> Path:
    """A run whose scores.parquet was made by interleaved merges of three stages over different ids:
    ``loss`` (shards, x00..x11), ``train-proxy`` (a derived table over x06..x15, with its own
    n_tokens), ``loss`` again (its n_tokens win; x12..x15 get null there), then ``ifd`` (x16, x00)."""
    with Run.open(path) as run:
        loss = run.stage("loss", FP)
        for k, t in enumerate(loss_shards()):
            loss.write_shard(k, t)
        loss.merge_scores()
        loss.mark_complete({"shards": 3})
        proxy = run.stage("train-proxy", FP)
        proxy.write_shard(0, _table(["a"], loss=[1.0]))
        proxy.merge_scores(proxy_table(), derived=True)
        proxy.mark_complete({"shards": 1})
        loss.merge_scores()
        ifd = run.stage("ifd", FP)
        ifd.write_shard(0, _table(["x16", "x00"], ifd=[0.5, 0.7]))
        ifd.merge_scores()
        ifd.mark_complete({"shards": 1})
        emb = run.stage("embedding", FP)
        vecs = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
        for k, (lo, hi) in enumerate(((0, 3), (3, 5))):
            flat = pa.array(vecs[lo:hi].reshape(-1), pa.float32())
            emb.write_shard(k, _table([f"x{i:02d}" for i in range(lo, hi)],
                                      embedding=pa.FixedSizeListArray.from_arrays(flat, 3)))
        emb.mark_complete({"shards": 2})
        run.write_embeddings([f"x{i:02d}" for i in range(5)], vecs, model="minilm", stage="embedding")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("verify") / "run")


@pytest.fixture
def run_copy(built, tmp_path) -> Path:
    shutil.copytree(built, tmp_path / "run")
    return tmp_path / "run"


def test_replaying_first_then_last_merges_gives_the_history(built):
    t = pq.read_table(built / "scores.parquet")
    assert t.column("id").to_pylist() == [f"x{i:02d}" for i in range(17)]
    # n_tokens: from the last loss merge, null where loss has no row; lp only where train-proxy has one
    assert t.column("n_tokens").to_pylist()[12:] == [None] * 5
    assert t.column("lp").to_pylist()[:6] == [None] * 6
    record = json.loads((built / "manifest.json").read_text())["scores"]
    assert (record["first"] == ["loss", "train-proxy", "ifd"]
            and record["last"] == ["train-proxy", "loss", "ifd"])
    assert record["sha256"] == hashlib.sha256((built / "scores.parquet").read_bytes()).hexdigest()


@pytest.mark.parametrize("how", ["overwrite", "truncate", "empty", "delete"])
def test_damaged_scores_are_rebuilt_with_the_same_bytes(run_copy, built, how, caplog):
    want = (built / "scores.parquet").read_bytes()
    damage(run_copy / "scores.parquet", how)
    with caplog.at_level(logging.WARNING), Run.open(run_copy) as run:
        table = run.read_scores()
    assert (run_copy / "scores.parquet").read_bytes() == want
    assert table.equals(pq.read_table(built / "scores.parquet"))
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(run_copy / "scores.parquet") in w and "rebuilt from the stages" in w
               for w in warning), warning
    assert not any("differs" in w for w in warning)


@pytest.mark.parametrize("how", ["overwrite", "truncate", "empty", "delete"])
def test_damaged_embeddings_are_rebuilt_with_the_same_bytes(run_copy, built, how, caplog):
    want = (built / "embeddings.parquet").read_bytes()
    damage(run_copy / "embeddings.parquet", how)
    with caplog.at_level(logging.WARNING), Run.open(run_copy) as run:
        ids, vecs = run.read_embeddings()
    assert (run_copy / "embeddings.parquet").read_bytes() == want
    assert ids == [f"x{i:02d}" for i in range(5)] and vecs.shape == (5, 3)
    assert any(str(run_copy / "embeddings.parquet") in r.getMessage() for r in caplog.records)


def test_damaged_shard_is_not_done_hashed_once_and_rewritten(run_copy, built, monkeypatch, caplog):
    shard = run_copy / "stages" / "loss" / "shard-00001.parquet"
    damage(shard, "overwrite")
    calls: list[str] = []
    real = digest.file_sha256
    for module in (digest, runmod):
        monkeypatch.setattr(module, "file_sha256", lambda p: calls.append(Path(p).name) or real(p))
    with caplog.at_level(logging.WARNING), Run.open(run_copy) as run:
        stage = run.stage("loss", FP)
        assert [stage.shard_done(k) for k in range(3)] == [True, False, True]
        assert stage.shards_done() == [0, 2] and not stage.shard_done(1)
        with pytest.raises(ProxyselError, match="shard-00001.parquet does not match its marker"):
            stage.read_shards()
        with pytest.raises(ProxyselError, match=r"misses shards \[1\]"):
            stage.read_shards(3)
        assert sorted(calls) == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
        warnings = [r.getMessage() for r in caplog.records if "shard-00001" in r.getMessage()]
        assert len(warnings) == 1 and str(shard) in warnings[0] and "computed again" in warnings[0]
        stage.write_shard(1, loss_shards()[1])
        assert stage.shard_done(1) and stage.read_shards().num_rows == 12
        # the write hashed its temporary file once; the shard is not hashed again after the rename
        assert calls.count("shard-00001.parquet") == 1 and sum(c.startswith(".tmp-") for c in calls) == 1
    assert shard.read_bytes() == (built / "stages" / "loss" / "shard-00001.parquet").read_bytes()


def test_scores_rebuilt_from_a_repaired_stage_and_unstaged_columns_reported(run_copy, built, caplog):
    with Run.open(run_copy) as run:
        ids = [f"x{i:02d}" for i in range(3)]
        run.merge_scores(_table(ids, extra=[1.0, 2.0, 3.0]))  # no stage: cannot be replayed
        assert run.manifest["scores"]["unstaged_columns"] == ["extra"]
    damage(run_copy / "scores.parquet", "overwrite")
    with caplog.at_level(logging.WARNING), Run.open(run_copy) as run:
        table = run.read_scores()
        assert "extra" not in table.column_names and "unstaged_columns" not in run.manifest["scores"]
    assert (run_copy / "scores.parquet").read_bytes() == (built / "scores.parquet").read_bytes()
    assert any("lacks the columns extra" in r.getMessage() for r in caplog.records)


def test_scores_without_stages_cannot_be_rebuilt(tmp_path):
    with Run.open(tmp_path / "run") as run:
        run.merge_scores(_table(["a"], loss=[1.0]))
    damage(tmp_path / "run" / "scores.parquet", "truncate")
    with Run.open(tmp_path / "run") as run, pytest.raises(ProxyselError, match="no stage was merged into it"):
        run.read_scores()


def test_rebuild_is_all_or_nothing(run_copy, built, tmp_path):
    """With a stage damaged too, the rebuild names it and writes nothing (no scores without its columns);
    rerunning the stage repairs it and then the scores: the same bytes as that rerun on an undamaged run."""
    def rerun_train_proxy(path: Path) -> None:
        with Run.open(path) as run:
            run.stage("train-proxy", FP).merge_scores(proxy_table(), derived=True)

    undamaged = tmp_path / "undamaged"
    shutil.copytree(built, undamaged)
    rerun_train_proxy(undamaged)
    damage(run_copy / "scores.parquet", "overwrite")
    damage(run_copy / "stages" / "train-proxy" / "merged.parquet", "truncate")
    damaged = (run_copy / "scores.parquet").read_bytes()
    with Run.open(run_copy) as run:
        with pytest.raises(ProxyselError, match=r"cannot be rebuilt: stage 'train-proxy': .*merged.parquet "
                                                r"is truncated"):
            run.read_scores()
        assert (run_copy / "scores.parquet").read_bytes() == damaged
    rerun_train_proxy(run_copy)
    assert (run_copy / "scores.parquet").read_bytes() == (undamaged / "scores.parquet").read_bytes()


def test_legacy_unreadable_scores_name_the_file(tmp_path):
    """A scores.parquet that no manifest entry vouches for (an older proxysel) fails with advice."""
    with Run.open(tmp_path / "run") as run:
        run.merge_scores(_table(["a"], loss=[1.0]))
        run.update_manifest(scores=None)
    damage(tmp_path / "run" / "scores.parquet", "truncate")
    with Run.open(tmp_path / "run") as run, \
            pytest.raises(ProxyselError, match="scores.parquet is unreadable"):
        run.read_scores()


def test_derived_table_is_not_rewritten_when_unchanged(run_copy):
    merged = run_copy / "stages" / "train-proxy" / "merged.parquet"
    before = (merged.stat().st_mtime_ns, merged.with_suffix(".done").stat().st_mtime_ns)
    with Run.open(run_copy) as run:
        stage = run.stage("train-proxy", FP)
        stage.merge_scores(proxy_table(), derived=True)
    assert (merged.stat().st_mtime_ns, merged.with_suffix(".done").stat().st_mtime_ns) == before


def test_verify_clean_run(built, capsys):
    report = verify_run(built)
    # the manifest, 4 stage fingerprints, 7 markers (3 + 2 of train-proxy + 1 + 2), scores, embeddings
    assert report.clean and report.checked == 1 + 4 + 8 + 1 + 1
    assert main(["-q", "verify", str(built)]) == 0
    assert "clean" in capsys.readouterr().out
    assert not (built / ".lock").exists()


def test_verify_names_every_damaged_file(run_copy, capsys):
    damage(run_copy / "stages" / "loss" / "shard-00002.parquet", "overwrite")
    damage(run_copy / "stages" / "train-proxy" / "merged.parquet", "truncate")
    # a complete stage whose shard nothing vouches for
    damage(run_copy / "stages" / "embedding" / "shard-00000.done", "delete")
    damage(run_copy / "scores.parquet", "empty")
    damage(run_copy / "embeddings.parquet", "delete")
    assert main(["-q", "verify", str(run_copy)]) == 2
    out = capsys.readouterr().out
    assert "5 damaged" in out
    for rel, words in [("stages/loss/shard-00002.parquet", "other bytes"),
                       ("stages/train-proxy/merged.parquet", "truncated"),
                       ("stages/embedding/shard-00000.parquet",
                        "stage 'embedding' is complete with 2 shards"),
                       ("scores.parquet", "empty (zero-length)"), ("embeddings.parquet", "missing")]:
        line = next((x for x in out.splitlines() if x.startswith(f"  damaged: {run_copy / rel} ")), "")
        assert words in line, (rel, out)
    assert "computes this shard again" in out and "rebuilds it from the stages" in out
    # verify changes nothing: the damage is still there for the next command to repair
    assert (run_copy / "scores.parquet").stat().st_size == 0


def test_verify_checks_selection_hashes(run_copy, capsys):
    from proxysel.store import atomic_write_json

    sel = run_copy / "selections" / "top"
    sel.mkdir()
    (sel / "selected.jsonl").write_text('{"id": "x00"}\n')
    atomic_write_json(sel / "meta.json",
                      {"sha256": {"selected.jsonl": digest.file_sha256(sel / "selected.jsonl")}})
    assert verify_run(run_copy).clean
    (sel / "selected.jsonl").write_text('{"id": "x01"}\n')
    report = verify_run(run_copy)
    assert [d.path for d in report.damaged] == [sel / "selected.jsonl"]
    assert "select" in report.damaged[0].repair and "'top'" in report.damaged[0].repair


def test_repair_rebuilds_now_and_the_report_points_to_it(run_copy, built, capsys):
    from proxysel.reporting.load import load_run

    damage(run_copy / "scores.parquet", "overwrite")
    damage(run_copy / "embeddings.parquet", "empty")
    with pytest.raises(ProxyselError, match=r"scores.parquet has other bytes.*verify .* --repair"):
        load_run(run_copy, read_data=False)  # the report only reads: it says what repairs the file
    assert main(["-q", "verify", str(run_copy), "--repair"]) == 0
    assert "clean" in capsys.readouterr().out
    for name in ("scores.parquet", "embeddings.parquet"):
        assert (run_copy / name).read_bytes() == (built / name).read_bytes()
    assert load_run(run_copy, read_data=False).n == 17


def test_verify_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["-q", "verify", str(tmp_path)]) == 2
    assert "not a proxysel run folder" in capsys.readouterr().err
