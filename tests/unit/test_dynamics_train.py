"""One training step: the loss normalisation (parity with a plain reference) and resumable state."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import write_qa_pool  # noqa: E402
from proxysel.data import read_pool  # noqa: E402
from proxysel.dynamics.state import latest_state, load_state, save_state  # noqa: E402
from proxysel.dynamics.train import TrainConfig, backward, make_optimizer, optimizer_step  # noqa: E402
from proxysel.errors import UsageError  # noqa: E402
from proxysel.models.loader import load_causal_lm  # noqa: E402
from proxysel.models.render import Renderer  # noqa: E402


@pytest.fixture(scope="module")
def encoded_pool(tiny_model_dir, tmp_path_factory):
    path = write_qa_pool(tmp_path_factory.mktemp("pool") / "pool.jsonl", 12, seed=3)
    lm = load_causal_lm(str(tiny_model_dir))
    renderer = Renderer(lm.tokenizer, max_length=128)
    return [renderer.encode(e) for e in read_pool(path).examples], lm.tokenizer.pad_token_id


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _reference_grads(model, encoded, batch):
    """Per-token mean over the whole batch with plain full-vocabulary logits, one example at a time."""
    model.zero_grad(set_to_none=True)
    total = sum(encoded[i].n_response_tokens for i in batch)
    values = []
    for i in batch:
        e = encoded[i]
        logits = model(input_ids=torch.tensor([e.input_ids])).logits[0, :-1]
        labels = torch.tensor(e.labels[1:])
        loss_sum = torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
        (loss_sum / total).backward()
        values.append(loss_sum.item() / e.n_response_tokens)
    return _grads(model), np.array(values)


def test_gradient_is_the_per_token_mean_over_the_effective_batch(tiny_model_dir, encoded_pool):
    encoded, pad_id = encoded_pool
    model = load_causal_lm(str(tiny_model_dir)).model.train()
    batch = [7, 2, 9, 0, 4, 11, 5]
    ref, ref_losses = _reference_grads(model, encoded, batch)
    for batch_size in (1, 3, 7):
        model.zero_grad(set_to_none=True)
        stats = backward(model, encoded, batch, pad_id=pad_id, config=TrainConfig(batch_size=batch_size),
                         device="cpu")
        got = _grads(model)
        assert set(got) == set(ref)
        for name in ref:
            torch.testing.assert_close(got[name], ref[name], rtol=1e-4, atol=1e-7, msg=name)
        # example_loss is aligned with `batch`, whatever the micro-batch order
        np.testing.assert_allclose(stats.example_loss, ref_losses, rtol=1e-5)
        n_tok = sum(encoded[i].n_response_tokens for i in batch)
        weights = np.array([encoded[i].n_response_tokens for i in batch]) / n_tok
        assert stats.loss == pytest.approx(float(weights @ ref_losses), rel=1e-5)
        assert stats.tokens == sum(encoded[i].n_tokens for i in batch)


def _steps(model, opt, encoded, pad_id, batches, cfg):
    for b in batches:
        backward(model, encoded, b, pad_id=pad_id, config=cfg, device="cpu")
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer_step(opt)


@pytest.mark.parametrize("lora", [False, True])
def test_state_round_trip_continues_bit_for_bit(tmp_path, tiny_model_dir, encoded_pool, lora):
    if lora:
        pytest.importorskip("peft")
    from proxysel.dynamics.train import add_lora

    encoded, pad_id = encoded_pool
    cfg = TrainConfig(batch_size=2, lr=1e-2, lora=lora, weight_decay=0.1)
    batches = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [1, 3, 5, 7]]

    def fresh():
        m = load_causal_lm(str(tiny_model_dir)).model.train()
        if lora:
            add_lora(m, cfg)
        return m, make_optimizer(m, cfg)

    model, opt = fresh()
    _steps(model, opt, encoded, pad_id, batches[:2], cfg)
    online = np.array([1.5, np.nan, 3.0])
    save_state(tmp_path / "state", 2, model, opt, arrays={"online": online}, meta={"history": [{"step": 1}]})
    _steps(model, opt, encoded, pad_id, batches[2:], cfg)
    expected = {n: p.detach().clone() for n, p in model.named_parameters()}

    model2, opt2 = fresh()
    folder = latest_state(tmp_path / "state")
    assert folder is not None and folder.name == "step-000002"
    assert (sorted(p.suffix for p in folder.iterdir())
            == [".json", ".safetensors", ".safetensors", ".safetensors"])
    meta, arrays = load_state(folder, model2, opt2)
    assert meta["step"] == 2 and meta["history"] == [{"step": 1}]
    np.testing.assert_array_equal(arrays["online"], online)
    _steps(model2, opt2, encoded, pad_id, batches[2:], cfg)
    for name, p in model2.named_parameters():
        assert torch.equal(p, expected[name]), name
    if lora:  # only the adapters were trained and saved
        assert all("lora_" in n for n, p in model2.named_parameters() if p.requires_grad)


def test_latest_state_keeps_only_the_newest(tmp_path, tiny_model_dir):
    model = load_causal_lm(str(tiny_model_dir)).model
    opt = make_optimizer(model, TrainConfig())
    for step in (3, 6):
        save_state(tmp_path, step, model, opt)
    assert [p.name for p in tmp_path.iterdir()] == ["step-000006"]
    assert latest_state(tmp_path).name == "step-000006"
    assert latest_state(tmp_path / "missing") is None


@pytest.mark.parametrize("field,value", [("epochs", 0), ("checkpoints", 1), ("checkpoints", -1), ("lr", 0.0),
                                         ("warmup_ratio", 1.0), ("dtype", "float16"), ("batch_size", 0)])
def test_config_validates_and_names_the_field(field, value):
    with pytest.raises(UsageError, match=field):
        dataclasses.replace(TrainConfig(), **{field: value})


def test_lora_adapters_are_drawn_from_the_seed_alone(tiny_model_dir):
    """The same seed gives the same initial adapters whatever the global RNG did before (a bench's
    earlier cells), a different seed different ones, and the caller's RNG state is left alone."""
    pytest.importorskip("peft")
    from proxysel.dynamics.train import add_lora

    def adapters(seed, noise_before):
        torch.manual_seed(noise_before)
        torch.rand(97)  # the global RNG in some state the caller chose
        m = load_causal_lm(str(tiny_model_dir)).model
        state = torch.random.get_rng_state()
        add_lora(m, TrainConfig(lora=True, seed=seed))
        assert torch.equal(torch.random.get_rng_state(), state)
        return {n: p.detach().clone() for n, p in m.named_parameters() if "lora_A" in n}

    a, b, c = adapters(0, noise_before=1), adapters(0, noise_before=2), adapters(1, noise_before=1)
    assert a and a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not any(torch.equal(a[n], c[n]) for n in a)
