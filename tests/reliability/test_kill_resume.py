"""Kill and resume: ``score``, ``train-proxy``, ``select`` and ``run`` survive SIGKILL at seeded random
points and finish with the same bytes as an uninterrupted run; no id is lost or duplicated; no
half-written final file is ever visible; a finished run recomputes nothing; a changed config
recomputes exactly the stages it affects.

Each scenario runs the uninterrupted reference in this process (one torch thread, as the
subprocesses) and the killed command as subprocesses (tests/reliability/harness.py).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from conftest import write_qa_pool  # noqa: E402
from harness import KillHarness, assert_ids_exactly_once, assert_same_outputs, check_readable, cli, mtimes  # noqa: E402
from proxysel.cli.main import main  # noqa: E402

pytestmark = pytest.mark.slow

MAX_LENGTH = "48"


@contextlib.contextmanager
def one_thread():
    """The subprocesses run with one torch thread; the in-process reference must too (same sums)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def in_process(args: list[str]) -> None:
    with one_thread():
        assert main(["-q", *map(str, args)]) == 0


def pool_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    # every 16th prompt is ~150 words: truncated away at --max-length 48 (NaN losses, flagged)
    return write_qa_pool(tmp_path_factory.mktemp("kill-pool") / "pool.jsonl", 64, seed=5, long_every=16)


def score_args(pool: Path, model: Path, out: Path) -> list[str]:
    # One example per shard: 64 durable markers, so 6 kills fit even where the tiny model scores
    # a shard in milliseconds (with 16 shards a quiet CI machine finished after 4 kills).
    return ["score", pool, "--model", model, "--out", out, "--shard-size", "1", "--max-length", MAX_LENGTH]


@pytest.fixture(scope="module")
def score_reference(tmp_path_factory, pool, tiny_model_dir) -> Path:
    ref = tmp_path_factory.mktemp("score-ref") / "run"
    in_process(score_args(pool, tiny_model_dir, ref))
    return ref


def test_score_killed_at_random_points(tmp_path, pool, tiny_model_dir, score_reference):
    run = tmp_path / "run"
    harness = KillHarness(score_args(pool, tiny_model_dir, run), run, seed=11, jitter=0.03, max_delay=6.0)
    harness.run_until_done(kills=6)
    assert_same_outputs(run, score_reference)
    assert_ids_exactly_once(run, pool_ids(pool))
    stage = json.loads((run / "manifest.json").read_text())["stages"]["loss"]
    assert stage["status"] == "complete" and stage["shards"] == 64

    # A finished run recomputes nothing: no shard is rewritten, the model is not even loaded.
    before = mtimes(run, "stages")
    scores = (run / "scores.parquet").read_bytes()
    in_process(score_args(pool, tiny_model_dir, run))
    stage = json.loads((run / "manifest.json").read_text())["stages"]["loss"]
    assert stage["shards_computed"] == 0
    after = mtimes(run, "stages")
    assert ({k: v for k, v in after.items() if "shard-" in k}
            == {k: v for k, v in before.items() if "shard-" in k})
    assert (run / "scores.parquet").read_bytes() == scores


def test_select_killed_at_random_points(tmp_path, score_reference):
    run = tmp_path / "run"
    shutil.copytree(score_reference, run)
    ref = tmp_path / "ref"
    shutil.copytree(score_reference, ref)
    args = ["select", "--method", "top", "--signal", "loss", "--order", "low", "--budget", "0.25",
            "--name", "top"]
    in_process([args[0], ref, *args[1:]])

    def lock_taken(r: Path) -> int:  # a new process took the lock: kill it somewhere after that
        try:
            return (r / ".lock").stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    harness = KillHarness([args[0], run, *args[1:]], run, seed=12, jitter=0.25, max_delay=3.0, p_marker=0.75,
                          markers=lock_taken, restart_finished=True)
    harness.run_until_done(kills=4)
    assert_same_outputs(run, ref)
    assert_ids_exactly_once(run, pq_ids(ref))
    meta = json.loads((run / "selections" / "top" / "meta.json").read_text())
    assert meta["n_selected"] == 16


def pq_ids(run: Path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(run / "scores.parquet", columns=["id"]).column("id").to_pylist()


def train_args(pool: Path, model: Path, out: Path) -> list[str]:
    # 32 examples, effective batch 4: 8 steps per epoch, 16 steps; passes at 0, 4, 8, 12, 16 (four
    # parts of 8 examples each) and a training state saved at every pass step.
    return ["train-proxy", pool, "--model", model, "--out", out, "--epochs", "2", "--checkpoints", "5",
            "--batch-size", "2", "--grad-accum", "2", "--lr", "1e-2", "--max-length", MAX_LENGTH,
            "--shard-size", "8", "--limit", "32"]


def test_train_proxy_killed_at_random_points(tmp_path, pool, tiny_model_dir):
    ref = tmp_path / "ref"
    in_process(train_args(pool, tiny_model_dir, ref))
    run = tmp_path / "run"
    harness = KillHarness(train_args(pool, tiny_model_dir, run), run, seed=13, jitter=0.05, max_delay=6.0)
    harness.run_until_done(kills=6)
    assert_same_outputs(run, ref)
    assert_ids_exactly_once(run, pool_ids(pool)[:32])
    stage = json.loads((run / "manifest.json").read_text())["stages"]["train-proxy"]
    assert stage["status"] == "complete"
    assert not (run / "stages" / "train-proxy" / "state").exists()


RUN_CONFIG = """\
out: {out}
data: {{path: {pool}, limit: 40}}
runtime: {{shard_size: 5}}
train_proxy: {{model: {model}, epochs: 1, checkpoints: 3, batch_size: 2, grad_accum: 2, lr: 1e-2, max_length: {ml}}}
score: {{signals: [loss], model: {model}, max_length: {ml}}}
select:
  - {{name: lp, method: lp_app, budget: 0.3, within_clusters: false}}
  - {{name: easy, method: top, signal: loss, order: low, budget: 8}}
report: {{enabled: true, read_data: false}}
"""  # noqa: E501  (a config file as a user writes it)


def test_run_pipeline_killed_at_random_points(tmp_path, pool, tiny_model_dir):
    if cli(["run", "--help"]).returncode != 0:
        pytest.skip("proxysel run is not available")
    configs = {}
    for name in ("ref", "run"):
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(RUN_CONFIG.format(out=tmp_path / name, pool=pool, model=tiny_model_dir,
                                                   ml=MAX_LENGTH), encoding="utf-8")
    ref, run = tmp_path / "ref", tmp_path / "run"
    in_process(["run", configs["ref"]])
    harness = KillHarness(["run", configs["run"]], run, seed=14, jitter=0.05, max_delay=6.0)
    harness.run_until_done(kills=6)
    assert_same_outputs(run, ref)
    assert_ids_exactly_once(run, pool_ids(pool)[:40])
    check_readable(run)

    # Rerunning the finished run recomputes nothing.
    before = mtimes(run)
    in_process(["run", configs["run"]])
    m = json.loads((run / "manifest.json").read_text())
    assert m["pipeline"]["last"]["ran"] == []
    assert {s: m["stages"][s]["shards_computed"] for s in ("loss",)} == {"loss": 0}
    after = mtimes(run)
    assert {k: v for k, v in after.items() if k.startswith(("stages", "selections"))} == \
        {k: v for k, v in before.items() if k.startswith(("stages", "selections"))}

    # A changed selection budget reruns that selection and the report, nothing else.
    in_process(["run", configs["run"], "select.easy.budget=10"])
    m = json.loads((run / "manifest.json").read_text())
    assert m["pipeline"]["last"]["ran"] == ["select:easy", "report"]
    changed = mtimes(run)
    assert {k: v for k, v in changed.items() if k.startswith(("stages", "selections/lp"))} == \
        {k: v for k, v in before.items() if k.startswith(("stages", "selections/lp"))}
    assert json.loads((run / "selections" / "easy" / "meta.json").read_text())["n_selected"] == 10

    # A changed scoring max_length recomputes the loss stage (and what reads it), not the proxy training.
    in_process(["run", configs["run"], "select.easy.budget=10", "score.max_length=40"])
    m = json.loads((run / "manifest.json").read_text())
    assert m["pipeline"]["steps"]["score"]["computed"] == ["loss"]
    assert m["pipeline"]["steps"]["train-proxy"]["computed"] == []
    assert m["stages"]["loss"]["fingerprint"]["max_length"] == 40
    now = mtimes(run)
    assert {k: v for k, v in now.items() if k.startswith("stages/train-proxy")} == \
        {k: v for k, v in before.items() if k.startswith("stages/train-proxy")}
    assert all(now[k] != before[k] for k in now if k.startswith("stages/loss/shard-") and k in before)
