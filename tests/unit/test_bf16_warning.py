"""bfloat16 on a CPU that emulates it is tens of times slower than float32: proxysel says so
(``models.loader.warn_if_emulated_bf16``), where a model is loaded and once per training run."""

from __future__ import annotations

import logging

import pytest

import proxysel.models.loader as loader

WARNING = "bfloat16 on this CPU is emulated"


@pytest.mark.parametrize("native, dtype, device, warns", [
    (False, "bfloat16", "cpu", True),
    (False, "bfloat16", "cpu:0", True),
    (False, "float32", "cpu", False),
    (False, "bfloat16", "cuda:0", False),   # a GPU's bf16 is native: nothing to say
    (True, "bfloat16", "cpu", False),
])
def test_warns_only_for_bf16_on_an_emulating_cpu(monkeypatch, caplog, native, dtype, device, warns):
    monkeypatch.setattr(loader, "cpu_bf16_native", lambda: native)
    with caplog.at_level(logging.WARNING, logger="proxysel.models.loader"):
        loader.warn_if_emulated_bf16(dtype, device)
    assert (WARNING in caplog.text) is warns


def test_training_warns_once_per_run_not_per_step(monkeypatch, caplog, tmp_path, tiny_model_dir):
    pytest.importorskip("torch")
    from conftest import write_qa_pool
    from proxysel.data import read_pool
    from proxysel.dynamics.train import TrainConfig, fine_tune
    from proxysel.models.render import Renderer

    lm = loader.load_causal_lm(str(tiny_model_dir))
    renderer = Renderer(lm.tokenizer, max_length=64)
    pool = read_pool(write_qa_pool(tmp_path / "pool.jsonl", 8, seed=1))
    encoded = [renderer.encode(e) for e in pool.examples]
    monkeypatch.setattr(loader, "cpu_bf16_native", lambda: False)
    for dtype, expected in (("bfloat16", 1), ("float32", 0)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="proxysel.models.loader"):
            plan, _ = fine_tune(lm.model, encoded, pad_id=lm.tokenizer.pad_token_id,
                                state_dir=tmp_path / dtype,
                                config=TrainConfig(dtype=dtype, epochs=2, batch_size=2, grad_accum=1))
        assert plan.total_steps >= 4  # several steps, each entering the autocast region
        assert caplog.text.count(WARNING) == expected


def test_the_probe_is_false_on_a_cpu_without_avx512():
    torch = pytest.importorskip("torch")
    # AVX-512 BF16 and AMX both need AVX-512: a CPU that torch dispatches as AVX2 or lower cannot have them.
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT", "NO AVX"):
        assert loader.cpu_bf16_native() is False
    else:
        assert isinstance(loader.cpu_bf16_native(), bool)
