"""A train-proxy run killed with SIGKILL and started again ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")

from conftest import write_qa_pool  # noqa: E402

# 48 examples / effective batch 8: 6 steps per epoch, 18 steps; checkpoints at 0, 3, 6, ..., 18,
# so the training state is saved every 3 steps, mid-epoch too.
SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import proxysel
    import proxysel.dynamics.train as train
    import proxysel.engine as engine

    data, out, model, where, at = sys.argv[1:6]
    at = int(at)
    calls = 0

    def dies_at(fn):
        def wrapped(*args, **kwargs):
            global calls
            calls += 1
            if calls == at:  # the process dies here, with no chance to clean up
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        return wrapped

    if where == "optimizer_step":
        train.optimizer_step = dies_at(train.optimizer_step)
    elif where == "score_losses":
        engine.score_losses = dies_at(engine.score_losses)
    proxysel.train_proxy(data, out=out, model=model, epochs=3, checkpoints=7, batch_size=2, grad_accum=4,
                         lr=1e-2, max_length=64, shard_size=20)
""")


def _run(tmp: Path, data: Path, out: Path, model: Path, where: str = "none", at: int = 0) -> int:
    script = tmp / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PROXYSEL_QUIET": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(data), str(out), str(model), where, str(at)],
                          env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(proc.stderr)
    return proc.returncode


def _result(run: Path) -> tuple[np.ndarray, np.ndarray, list]:
    t = pq.read_table(run / "scores.parquet")
    ppl = np.array(t.column("ppl_epoch").to_pylist(), dtype=float)
    traj = np.array(t.column("trajectory").to_pylist(), dtype=float)
    stage = json.loads((run / "manifest.json").read_text())["stages"]["train-proxy"]
    hist = [json.loads(x) for x in (run / stage["history"]).read_text().splitlines()]
    return ppl, traj, hist


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("resume-ref")
    data = write_qa_pool(tmp / "pool.jsonl", 48, seed=1)
    assert _run(tmp, data, tmp / "run", tiny_model_dir) == 0
    return data, _result(tmp / "run")


@pytest.mark.parametrize("where,at,resumes_from", [
    ("optimizer_step", 11, 9),  # killed mid-epoch 2, after the state of step 9 was saved
    ("score_losses", 11, 9),    # killed inside the pass after step 9 (3 parts per pass: part 1 of 3)
])
def test_killed_run_resumes_to_the_same_result(tmp_path, tiny_model_dir, reference, where, at, resumes_from):
    data, (ppl_ref, traj_ref, hist_ref) = reference
    out = tmp_path / "run"
    assert _run(tmp_path, data, out, tiny_model_dir, where, at) == -signal.SIGKILL
    assert not (out / "scores.parquet").exists()
    state = out / "stages" / "train-proxy" / "state"
    assert [p.name for p in state.iterdir()] == [f"step-{resumes_from:06d}"]
    assert _run(tmp_path, data, out, tiny_model_dir) == 0
    ppl, traj, hist = _result(out)
    stage = json.loads((out / "manifest.json").read_text())["stages"]["train-proxy"]
    assert stage["resumed_from_step"] == resumes_from
    np.testing.assert_allclose(ppl, ppl_ref, rtol=1e-6, atol=0)
    np.testing.assert_allclose(traj, traj_ref, rtol=1e-6, atol=0)
    assert [h["loss"] for h in hist] == pytest.approx([h["loss"] for h in hist_ref], rel=1e-6)
