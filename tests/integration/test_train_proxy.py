"""`train-proxy` end to end on a tiny random-init Llama: ppl_epoch, lp, lp_app, trajectory, online, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")

import proxysel  # noqa: E402
from conftest import write_qa_pool  # noqa: E402
from proxysel.cli.main import main  # noqa: E402
from proxysel.errors import RunConflictError  # noqa: E402
from proxysel.signals.lp import lp, lp_app  # noqa: E402

# 40 examples, 4 of them with prompts too long for max_length 64 (response truncated away):
# 36 trainable / effective batch 8 = 5 steps per epoch, 15 steps in 3 epochs.
TINY = dict(epochs=3, checkpoints=7, batch_size=2, grad_accum=4, lr=1e-2, max_length=64, shard_size=16)


def _scores(run: Path) -> dict[str, np.ndarray]:
    t = pq.read_table(run / "scores.parquet")
    out = {c: t.column(c).to_pylist() for c in t.column_names}
    for c in ("ppl_epoch", "trajectory"):
        if c in out:
            out[c] = np.array([[np.nan if v is None else v for v in row] for row in out[c]], dtype=float)
    for c in ("lp", "lp_app"):
        out[c] = np.array([np.nan if v is None else v for v in out[c]], dtype=float)
    out["truncated"] = np.array(out["truncated"])
    return out


def _stage(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())["stages"]["train-proxy"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    d = tmp_path_factory.mktemp("train-proxy")
    data = write_qa_pool(d / "pool.jsonl", 40, long_every=10)
    run = proxysel.train_proxy(data, out=d / "run", model=str(tiny_model_dir), keep_checkpoints=True, **TINY)
    return data, run


def test_columns_and_plan(trained):
    _, run = trained
    s = _scores(run)
    plan = _stage(run)["plan"]
    assert plan["steps_per_epoch"] == 5 and plan["total_steps"] == 15
    assert plan["checkpoints"] == [0, 2, 5, 8, 10, 12, 15]
    assert plan["epoch_ends"] == [5, 10, 15]
    assert plan["pass_steps"] == plan["checkpoints"]  # epoch ends are checkpoints: scored once
    assert s["ppl_epoch"].shape == (40, 4) and s["trajectory"].shape == (40, 7)
    trunc = s["truncated"]
    assert trunc.sum() == 4
    for col in ("ppl_epoch", "trajectory"):
        assert np.isnan(s[col][trunc]).all() and np.isfinite(s[col][~trunc]).all()
    assert np.isnan(s["lp"][trunc]).all() and np.isnan(s["lp_app"][trunc]).all()
    np.testing.assert_array_equal(s["lp"], lp(s["ppl_epoch"], 1))
    np.testing.assert_array_equal(s["lp_app"], lp_app(s["ppl_epoch"], 1))
    # a checkpoint on an epoch end is that epoch's pass
    np.testing.assert_array_equal(s["trajectory"][:, [0, 2, 4, 6]], np.log(s["ppl_epoch"]))


def test_each_p_i_equals_an_independent_score_of_the_saved_weights(trained, tmp_path):
    data, run = trained
    s = _scores(run)
    ckpts = run / "stages" / "train-proxy" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == [f"step-{k:06d}" for k in (0, 2, 5, 8, 10, 12, 15)]
    for epoch, step in enumerate((0, 5, 10, 15)):
        folder = ckpts / f"step-{step:06d}"
        assert not list(folder.glob("*.bin")) and list(folder.glob("*.safetensors"))
        out = proxysel.score(data, out=tmp_path / f"score-{epoch}", model=str(folder),
                             max_length=TINY["max_length"], shard_size=TINY["shard_size"])
        loss = np.array([np.nan if v is None else v for v in pq.read_table(out / "scores.parquet")
                         .column("loss").to_pylist()])
        np.testing.assert_allclose(s["ppl_epoch"][:, epoch], np.exp(loss), rtol=1e-9, equal_nan=True)


def test_training_works(trained):
    _, run = trained
    s = _scores(run)
    ok = ~s["truncated"]
    p = s["ppl_epoch"][ok]
    assert (p[:, 1] < p[:, 0]).mean() >= 0.9
    assert (p[:, 3] < p[:, 1]).mean() >= 0.9
    hist = [json.loads(line) for line in (run / _stage(run)["history"]).read_text().splitlines()]
    assert [h["step"] for h in hist] == list(range(1, 16))
    assert hist[0]["lr"] == 0.0  # warmup from 0, as the HF schedule
    first, last = np.mean([h["loss"] for h in hist[:5]]), np.mean([h["loss"] for h in hist[-5:]])
    assert last < first - 0.3
    assert not (run / "stages" / "train-proxy" / "state").exists()  # removed once complete


def test_rerun_is_free_and_lp_epoch_is_recomputed(trained, tiny_model_dir):
    data, run = trained
    before = _scores(run)
    done = _stage(run)["completed"]
    proxysel.train_proxy(data, out=run, model=str(tiny_model_dir), keep_checkpoints=True, lp_epoch=2, **TINY)
    after = _scores(run)
    np.testing.assert_array_equal(after["ppl_epoch"], before["ppl_epoch"])
    np.testing.assert_array_equal(after["lp"], lp(before["ppl_epoch"], 2))
    assert _stage(run)["lp_epoch"] == 2 and _stage(run)["completed"] >= done
    with pytest.raises(RunConflictError, match="lr"):
        proxysel.train_proxy(data, out=run, model=str(tiny_model_dir), **{**TINY, "lr": 1e-3})
    # back to lp(1)
    proxysel.train_proxy(data, out=run, model=str(tiny_model_dir), keep_checkpoints=True, **TINY)


def test_lp_app_from_one_epoch_and_two_passes(tmp_path, tiny_model_dir, trained):
    data, full = trained
    run = proxysel.train_proxy(data, out=tmp_path / "run", model=str(tiny_model_dir),
                               **{**TINY, "epochs": 1, "checkpoints": 0})
    stage = _stage(run)
    assert stage["plan"]["pass_steps"] == [0, 5]
    s = _scores(run)
    assert s["ppl_epoch"].shape == (40, 2) and "trajectory" not in s
    np.testing.assert_array_equal(s["ppl_epoch"][:, 0], _scores(full)["ppl_epoch"][:, 0])
    np.testing.assert_array_equal(s["lp_app"], lp_app(s["ppl_epoch"], 1))


def test_online_takes_p1_from_the_training_forward_pass(tmp_path, tiny_model_dir, trained):
    data, _ = trained
    exact = proxysel.train_proxy(data, out=tmp_path / "exact", model=str(tiny_model_dir),
                                 **{**TINY, "epochs": 1, "checkpoints": 0})
    online = proxysel.train_proxy(data, out=tmp_path / "online", model=str(tiny_model_dir), online=True,
                                  **{**TINY, "epochs": 1, "checkpoints": None})
    assert _stage(online)["plan"]["pass_steps"] == [0]  # one epoch plus one pass
    e, o = _scores(exact), _scores(online)
    np.testing.assert_array_equal(o["ppl_epoch"][:, 0], e["ppl_epoch"][:, 0])
    ok = ~o["truncated"]
    assert np.isfinite(o["ppl_epoch"][ok]).all() and np.isnan(o["ppl_epoch"][~ok]).all()
    # Same data order and updates: the training run itself is the same as without --online.
    hist = lambda r: [json.loads(x)["loss"] for x in (r / _stage(r)["history"]).read_text().splitlines()]  # noqa: E731
    assert hist(online) == hist(exact)
    # The first batch is trained on the untouched weights: its online P_1 is its P_0.
    from proxysel.dynamics.schedule import make_plan

    plan = make_plan(o["truncated"], epochs=1, effective_batch=8, n_checkpoints=0, warmup_ratio=0.03)
    first = plan.batch(0, seed=42)
    np.testing.assert_allclose(o["ppl_epoch"][first, 1], o["ppl_epoch"][first, 0], rtol=1e-5)
    # ... and later batches have seen updates: their online P_1 lies between P_0 and the exact P_1.
    assert (o["ppl_epoch"][ok, 1] <= o["ppl_epoch"][ok, 0] * (1 + 1e-5)).all()


def test_lora_and_bf16(tmp_path, tiny_model_dir, trained):
    pytest.importorskip("peft")
    data, _ = trained
    run = proxysel.train_proxy(data, out=tmp_path / "lora", model=str(tiny_model_dir), lora=True, lora_r=4,
                               dtype="bfloat16", keep_checkpoints=True,
                               **{**TINY, "epochs": 1, "checkpoints": 2})
    s = _scores(run)
    ok = ~s["truncated"]
    assert np.isfinite(s["ppl_epoch"][ok]).all()
    assert (s["ppl_epoch"][ok, 1] < s["ppl_epoch"][ok, 0]).mean() >= 0.9
    from safetensors.torch import load_file

    adapter = load_file(str(run / "stages/train-proxy/checkpoints/step-000005/adapter.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)


def test_no_pickle_anywhere(trained):
    _, run = trained
    bad = [p for p in run.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}]
    assert bad == []


def test_cli(tmp_path, tiny_model_dir, trained, capsys):
    data, _ = trained
    args = ["-q", "train-proxy", str(data), "--model", str(tiny_model_dir), "--max-length", "64",
            "--batch-size", "4", "--grad-accum", "2", "--lr", "1e-2"]
    assert main([*args, "--out", str(tmp_path / "r"), "--epochs", "1", "--checkpoints", "3"]) == 0
    assert "scores.parquet" in capsys.readouterr().out
    assert _stage(tmp_path / "r")["plan"]["checkpoints"] == [0, 2, 5]
    assert main([*args, "--out", str(tmp_path / "bad1"), "--epochs", "1", "--lp-epoch", "2"]) == 2
    assert main([*args, "--out", str(tmp_path / "bad2"), "--dtype", "float16"]) == 2
    assert main([*args, "--out", str(tmp_path / "bad3"), "--checkpoints", "1"]) == 2
    err = capsys.readouterr().err
    assert "--lp-epoch" in err and "bfloat16" in err and "checkpoints" in err
