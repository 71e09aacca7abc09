"""`proxysel score` end to end on a tiny random-init model: outputs, exit codes, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")

from conftest import kill_after_markers  # noqa: E402
from proxysel.cli.main import main  # noqa: E402
from proxysel.store import RunFolder  # noqa: E402


def _pool(path: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    words = "alpha beta gamma delta the quick brown fox jumps over lazy dog two plus four".split()
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            q = " ".join(rng.choice(words, size=int(rng.integers(3, 30))))
            a = " ".join(rng.choice(words, size=int(rng.integers(1, 40))))
            f.write(json.dumps({"id": f"ex{i:05d}", "instruction": q, "output": a}) + "\n")
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxysel.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, "PROXYSEL_QUIET": "1"})


def test_score_writes_scores_matching_the_engine(tmp_path, tiny_model_dir):
    from proxysel.data import read_pool
    from proxysel.engine import score_losses
    from proxysel.models.loader import load_causal_lm
    from proxysel.models.render import Renderer

    data = _pool(tmp_path / "pool.jsonl", 40)
    run = tmp_path / "run"
    assert main(["-q", "score", str(data), "--model", str(tiny_model_dir), "--out", str(run),
                 "--shard-size", "16"]) == 0
    t = pq.read_table(run / "scores.parquet")
    assert t.column_names[:6] == ["id", "n_tokens", "n_response_tokens", "truncated", "loss", "ppl"]
    assert t.column("id").to_pylist() == [f"ex{i:05d}" for i in range(40)]
    lm = load_causal_lm(str(tiny_model_dir))
    r = Renderer(lm.tokenizer)
    ref = score_losses(lm.model, [r.encode(e) for e in read_pool(data).examples],
                       pad_id=lm.tokenizer.pad_token_id)
    np.testing.assert_allclose(t.column("loss").to_numpy(), ref.loss, atol=1e-5)
    np.testing.assert_allclose(t.column("ppl").to_numpy(), np.exp(ref.loss), rtol=1e-5)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["loss"]["examples"] == 40
    assert sorted(p.name for p in (run / "stages" / "loss").glob("shard-*.parquet")) == [
        "shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]


def test_rerun_with_other_model_refuses_then_overwrites(tmp_path, tiny_model_dir, tiny_base_model_dir):
    data = _pool(tmp_path / "pool.jsonl", 10)
    run = tmp_path / "run"
    assert main(["-q", "score", str(data), "--model", str(tiny_model_dir), "--out", str(run)]) == 0
    first = (run / "scores.parquet").read_bytes()
    r = _cli("score", str(data), "--model", str(tiny_base_model_dir), "--out", str(run))
    assert r.returncode == 2, r.stderr
    assert "overwrite" in r.stderr and "model" in r.stderr
    assert (run / "scores.parquet").read_bytes() == first  # nothing mixed in
    assert main(["-q", "score", str(data), "--model", str(tiny_base_model_dir), "--out", str(run),
                 "--overwrite"]) == 0
    assert (run / "scores.parquet").read_bytes() != first


def test_bad_record_exit_2_and_nothing_written(tmp_path, tiny_model_dir):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n', encoding="utf-8")
    run = tmp_path / "run"
    r = _cli("score", str(data), "--model", str(tiny_model_dir), "--out", str(run))
    assert r.returncode == 2
    assert "bad.jsonl:2" in r.stderr and "Traceback" not in r.stderr
    assert not run.exists()
    r = _cli("score", str(data), "--model", str(tiny_model_dir), "--out", str(run), "--on-bad-record", "skip")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert [s["line"] for s in manifest["skipped_records"]] == [2]
    assert pq.read_table(run / "scores.parquet").num_rows == 1


def test_usage_errors_exit_2(tmp_path, tiny_model_dir):
    data = _pool(tmp_path / "pool.jsonl", 3)
    assert _cli("score", str(data), "--out", str(tmp_path / "r"), "--signals", "nonsense",
                "--model", str(tiny_model_dir)).returncode == 2
    assert _cli("score", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "r")).returncode == 2
    assert _cli("score", str(data), "--out", str(tmp_path / "r"), "--model",
                str(tmp_path / "nomodel")).returncode == 2


def test_sigkill_during_score_then_resume_is_identical(tmp_path, tiny_model_dir):
    data = _pool(tmp_path / "pool.jsonl", 1500)
    args = ["score", str(data), "--model", str(tiny_model_dir), "--shard-size", "25"]
    ref = tmp_path / "ref"
    assert _cli(*args, "--out", str(ref)).returncode == 0

    run = tmp_path / "run"
    stage = run / "stages" / "loss"
    proc = subprocess.Popen([sys.executable, "-m", "proxysel.cli.main", *args, "--out", str(run)],
                            env={**os.environ, "PROXYSEL_QUIET": "1"})
    done_at_kill = kill_after_markers(proc, stage, 3, every=0.005)
    assert 0 < done_at_kill < 60, "the kill should land mid-run"
    assert not (run / "scores.parquet").exists()

    r = _cli(*args, "--out", str(run))
    assert r.returncode == 0, r.stderr
    assert (run / "scores.parquet").read_bytes() == (ref / "scores.parquet").read_bytes()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["loss"]["shards_computed"] == 60 - done_at_kill


def test_a_rerun_keeps_the_seconds_of_the_stages_it_finds_done(tmp_path, tiny_model_dir):
    """A sharded stage opened again with nothing to compute keeps the seconds of the process that
    computed it (seconds_all), so a resumed bench's ledger still charges them."""
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"instruction": f"say {i}", "output": f"{i} " * (i % 5 + 1)}) + "\n"
                            for i in range(12)))
    args = ["-q", "score", str(pool), "--signals", "loss", "--model", str(tiny_model_dir), "--out",
            str(tmp_path / "r"), "--shard-size", "4"]
    assert main(args) == 0
    first = RunFolder(tmp_path / "r").manifest["stages"]["loss"]
    assert first["seconds_all"] == first["seconds"] > 0 and first["shards_timed"] == first["shards"] == 3
    assert main(args) == 0
    again = RunFolder(tmp_path / "r").manifest["stages"]["loss"]
    assert again["shards_computed"] == 0
    assert again["seconds_all"] == round(first["seconds_all"] + again["seconds"], 3)
    assert again["shards_timed"] == 3
