"""`train-proxy` under torchrun with 2 gloo processes equals one process with the same effective batch.

36 examples, 3 of them truncated away at max_length 64: 33 trainable, effective batch 8 (2 x 4),
so every epoch ends with a batch of one example, one micro-batch: rank 1 has nothing to train
on there. batch_tokens 256 makes several scoring batches per part of 16, and the last part (4
examples) one batch, so rank 1 scores nothing there either.
"""

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

from conftest import write_qa_pool  # noqa: E402

pytestmark = pytest.mark.slow  # about 45 s on 2 cores: three trainings in subprocesses

ARGS = ["--epochs", "3", "--checkpoints", "7", "--batch-size", "2", "--grad-accum", "4", "--lr", "1e-2",
        "--max-length", "64", "--shard-size", "16", "--batch-tokens", "256"]


def _env() -> dict[str, str]:
    return {**os.environ, "PROXYSEL_QUIET": "1", "OMP_NUM_THREADS": "1"}


def _train(launcher: list[str], data: Path, model: Path, out: Path) -> None:
    cmd = [*launcher, "-m", "proxysel.cli.main", "-q", "train-proxy", str(data), "--model", str(model),
           "--out", str(out), *ARGS]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("scores.parquet") == 1, r.stdout  # printed by rank 0 only


def _torchrun() -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("ddp")
    data = write_qa_pool(tmp / "pool.jsonl", 36, seed=4, long_every=12)
    _train([sys.executable], data, tiny_model_dir, tmp / "one")
    _train(_torchrun(), data, tiny_model_dir, tmp / "two")
    return data, tmp / "one", tmp / "two"


def _scores(run: Path) -> dict[str, np.ndarray]:
    t = pq.read_table(run / "scores.parquet")
    return {"id": np.array(t.column("id").to_pylist()),
            "truncated": np.array(t.column("truncated").to_pylist()),
            **{c: np.array(t.column(c).to_pylist(), dtype=float)
               for c in ("ppl_epoch", "trajectory", "lp", "lp_app")}}


def _stage(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())["stages"]["train-proxy"]


def test_two_ranks_give_the_single_process_results(runs):
    _, one, two = runs
    a, b = _scores(one), _scores(two)
    assert _stage(one)["world_size"] == 1 and _stage(two)["world_size"] == 2
    assert _stage(two)["plan"] == _stage(one)["plan"] and _stage(one)["plan"]["trainable_examples"] == 33
    np.testing.assert_array_equal(b["id"], a["id"])
    np.testing.assert_array_equal(b["truncated"], a["truncated"])
    assert a["truncated"].sum() == 3
    # P_0 is scored before any update: the ranks score the very batches of one process, bit for bit.
    np.testing.assert_array_equal(b["ppl_epoch"][:, 0], a["ppl_epoch"][:, 0])
    # After updates the gradient sum is taken in another order (docs/scale.md): within 1e-5.
    np.testing.assert_allclose(b["ppl_epoch"], a["ppl_epoch"], rtol=1e-5, atol=0, equal_nan=True)
    np.testing.assert_allclose(b["trajectory"], a["trajectory"], rtol=0, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(np.log(b["ppl_epoch"]), np.log(a["ppl_epoch"]), rtol=0, atol=1e-5,
                               equal_nan=True)
    np.testing.assert_allclose(b["lp"], a["lp"], rtol=1e-5, atol=1e-7, equal_nan=True)
    assert np.isfinite(a["ppl_epoch"][~a["truncated"]]).all()
    assert (a["ppl_epoch"][~a["truncated"], 3] < a["ppl_epoch"][~a["truncated"], 0]).all()  # it trained

    hist = [[json.loads(x) for x in (run / _stage(run)["history"]).read_text().splitlines()]
            for run in (one, two)]
    assert [h["tokens"] for h in hist[1]] == [h["tokens"] for h in hist[0]]  # the same batches, all of them
    np.testing.assert_allclose([h["loss"] for h in hist[1]], [h["loss"] for h in hist[0]], rtol=1e-5)


def test_rank_0_alone_wrote_the_run_folder(runs):
    _, one, two = runs
    names = lambda run: sorted(str(p.relative_to(run)) for p in run.rglob("*")  # noqa: E731
                               if "logs" not in p.parts and p.name != ".lock")
    assert names(two) == names(one)
    assert not (two / "stages" / "train-proxy" / "state").exists()


KILLED_AT_STEP_11 = """
import os, signal, sys
import proxysel.dynamics.train as train
from proxysel.cli.main import main

calls = 0
step = train.optimizer_step

def dies(optimizer):
    global calls
    calls += 1
    if calls == 11:  # update 11: the state of step 10 and the passes up to step 10 are written
        os.kill(os.getpid(), signal.SIGKILL)
    step(optimizer)

train.optimizer_step = dies
sys.exit(main(sys.argv[1:]))
"""


def test_two_ranks_resume_a_killed_single_process_run(runs, tmp_path, tiny_model_dir):
    """The fingerprint does not hold the world size: both ranks load the state one process saved."""
    data, one, _ = runs
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-c", KILLED_AT_STEP_11, "-q", "train-proxy", str(data), "--model",
                        str(tiny_model_dir), "--out", str(run), *ARGS], env=_env(), capture_output=True,
                       timeout=300)
    assert r.returncode == -9, r.stderr
    assert [p.name for p in (run / "stages" / "train-proxy" / "state").iterdir()] == ["step-000010"]
    _train(_torchrun(), data, tiny_model_dir, run)
    assert _stage(run)["resumed_from_step"] == 10 and _stage(run)["world_size"] == 2
    a, b = _scores(one), _scores(run)
    # The passes at steps 0, 2, 5, 8 and 10 were written by the single process before it died ...
    np.testing.assert_array_equal(b["trajectory"][:, :5], a["trajectory"][:, :5])
    # ... those at 12 and 15 by the two ranks, which trained on from its state.
    np.testing.assert_allclose(b["trajectory"], a["trajectory"], rtol=0, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(b["ppl_epoch"], a["ppl_epoch"], rtol=1e-5, atol=0, equal_nan=True)
