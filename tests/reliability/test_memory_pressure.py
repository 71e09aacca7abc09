"""Memory pressure: an out-of-memory error inside a batch (a CPU MemoryError, or CUDA's "out of
memory" RuntimeError) halves the batch and retries it; the results are those of a run that never
ran out of memory. Scoring (``loss`` through the CLI), proxy training (``dynamics.train.backward``,
including a failure in the middle of a backward pass) and the ``ask_llm`` judge are covered; the
engine's own unit tests are in tests/unit/test_engine_parity.py.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")

from conftest import write_qa_pool  # noqa: E402
from harness import count  # noqa: E402
from proxysel.cli.main import main  # noqa: E402
from proxysel.data import read_pool  # noqa: E402
from proxysel.models.loader import load_causal_lm  # noqa: E402
from proxysel.models.render import Renderer  # noqa: E402


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return write_qa_pool(tmp_path_factory.mktemp("oom-pool") / "pool.jsonl", 12, seed=7)


def test_scoring_out_of_memory_halves_the_batch_through_the_cli(tmp_path, pool, tiny_model_dir, monkeypatch,
                                                                 caplog):
    import proxysel.engine as engine

    args = ["-q", "score", str(pool), "--model", str(tiny_model_dir), "--max-length", "64",
            "--batch-tokens", "100000"]
    assert main([*args, "--out", str(tmp_path / "ref")]) == 0
    real = engine.batch_token_losses
    sizes = []

    def flaky(model, ids, *a, **k):
        sizes.append(ids.shape[0])
        if ids.shape[0] > 3:  # "memory" holds three examples
            count("oom_injections")
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
        return real(model, ids, *a, **k)

    monkeypatch.setattr(engine, "batch_token_losses", flaky)
    assert main([*args, "--out", str(tmp_path / "oom")]) == 0
    assert sizes[0] == 12 and max(sizes[-3:]) <= 3
    assert "out of memory in a scoring batch; retrying with --batch-tokens" in caplog.text
    ref = pq.read_table(tmp_path / "ref" / "scores.parquet").to_pydict()
    got = pq.read_table(tmp_path / "oom" / "scores.parquet").to_pydict()
    assert got["id"] == ref["id"]
    np.testing.assert_allclose(got["loss"], ref["loss"], rtol=1e-5)


@pytest.fixture(scope="module")
def encoded(pool, tiny_model_dir):
    lm = load_causal_lm(str(tiny_model_dir))
    r = Renderer(lm.tokenizer, max_length=64)
    return [r.encode(e) for e in read_pool(pool).examples], lm.tokenizer.pad_token_id


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_training_out_of_memory_halves_the_micro_batch(tiny_model_dir, encoded, monkeypatch, caplog, where):
    """The step's gradient is the one of a run without the failure, even when the failure comes in
    the middle of a backward pass (after some gradients were already accumulated)."""
    import proxysel.dynamics.train as train

    enc, pad_id = encoded
    batch = [3, 0, 7, 11, 5, 9, 1, 2]
    config = train.TrainConfig(batch_size=8, grad_accum=1)
    model = load_causal_lm(str(tiny_model_dir)).model.train()
    model.zero_grad(set_to_none=True)
    ref_stats = train.backward(model, enc, batch, pad_id=pad_id, config=config, device="cpu")
    ref = _grads(model)

    real = train.batch_token_losses
    sizes = []

    def flaky(m, ids, *a, **k):
        sizes.append(ids.shape[0])
        losses, rows = real(m, ids, *a, **k)
        if ids.shape[0] > 2:  # "memory" holds two examples per micro-batch
            count("oom_injections")
            if where == "forward":
                raise MemoryError("injected")
            return _FailingBackward.apply(losses, m.get_output_embeddings().weight), rows
        return losses, rows

    monkeypatch.setattr(train, "batch_token_losses", flaky)
    model.zero_grad(set_to_none=True)
    stats = train.backward(model, enc, batch, pad_id=pad_id, config=config, device="cpu")
    assert sizes[:3] == [8, 4, 2] and set(sizes[3:]) == {2}
    assert "out of memory in a training micro-batch" in caplog.text
    got = _grads(model)
    assert set(got) == set(ref)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-4, atol=1e-7, msg=name)
    assert stats.loss == pytest.approx(ref_stats.loss, rel=1e-6) and stats.tokens == ref_stats.tokens
    np.testing.assert_allclose(stats.example_loss, ref_stats.example_loss, rtol=1e-6)


class _FailingBackward(torch.autograd.Function):
    """Identity on the losses; in backward, first adds a bogus gradient to ``weight`` (as a backward
    pass that got partway does), then raises the injected out-of-memory error."""

    @staticmethod
    def forward(ctx, losses, weight):
        ctx.weight = weight
        return losses.view_as(losses)

    @staticmethod
    def backward(ctx, grad):
        with torch.no_grad():
            bogus = torch.ones_like(ctx.weight)
            ctx.weight.grad = bogus if ctx.weight.grad is None else ctx.weight.grad + bogus
        raise MemoryError("injected in the backward pass")


def test_training_out_of_memory_of_one_example_is_raised(tiny_model_dir, encoded, monkeypatch):
    import proxysel.dynamics.train as train

    enc, pad_id = encoded
    model = load_causal_lm(str(tiny_model_dir)).model.train()

    def always(*a, **k):
        raise MemoryError("injected")

    monkeypatch.setattr(train, "batch_token_losses", always)
    with pytest.raises(MemoryError):
        train.backward(model, enc, [0, 1], pad_id=pad_id, config=train.TrainConfig(batch_size=2),
                       device="cpu")


def test_ask_llm_out_of_memory_halves_the_batch(tmp_path, pool, tiny_model_dir, monkeypatch, caplog):
    import proxysel.signals.ask_llm as ask_llm

    args = ["-q", "score", str(pool), "--signals", "ask_llm", "--judge", str(tiny_model_dir), "--max-length",
            "400", "--batch-tokens", "100000"]
    assert main([*args, "--out", str(tmp_path / "ref")]) == 0
    real = ask_llm.next_token_probs
    sizes = []

    def flaky(model, batch_ids, pad_id):
        sizes.append(len(batch_ids))
        if len(batch_ids) > 2:
            count("oom_injections")
            raise MemoryError("injected")
        return real(model, batch_ids, pad_id)

    monkeypatch.setattr(ask_llm, "next_token_probs", flaky)
    assert main([*args, "--out", str(tmp_path / "oom")]) == 0
    assert sizes[0] == 12 and len([s for s in sizes if s > 2]) <= 3  # halving, not one retry per example
    assert sum(s for s in sizes if s <= 2) == 12  # every example judged exactly once
    assert "out of memory in an ask_llm batch" in caplog.text
    ref = pq.read_table(tmp_path / "ref" / "scores.parquet").to_pydict()
    got = pq.read_table(tmp_path / "oom" / "scores.parquet").to_pydict()
    assert got["id"] == ref["id"]
    np.testing.assert_allclose(got["ask_llm"], ref["ask_llm"], rtol=1e-5)
    stage = json.loads((tmp_path / "oom" / "manifest.json").read_text())["stages"]["ask_llm"]
    assert stage["status"] == "complete"
