"""bfloat16 on a CPU that emulates it is tens of times slower than float32: proxysel says so
(``models.loader.warn_if_emulated_bf16``), where a model is loaded and where training autocasts."""

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


def test_the_training_autocast_warns_too(monkeypatch, caplog):
    torch = pytest.importorskip("torch")
    from proxysel.dynamics.train import autocast
    from proxysel.options import TrainProxyConfig

    monkeypatch.setattr(loader, "cpu_bf16_native", lambda: False)
    with caplog.at_level(logging.WARNING, logger="proxysel.models.loader"):
        with autocast(TrainProxyConfig(dtype="bfloat16"), "cpu"):
            assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert WARNING in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="proxysel.models.loader"):
        with autocast(TrainProxyConfig(dtype="float32"), "cpu"):
            pass
    assert WARNING not in caplog.text


def test_the_probe_is_false_on_a_cpu_without_avx512():
    torch = pytest.importorskip("torch")
    # AVX-512 BF16 and AMX both need AVX-512: a CPU that torch dispatches as AVX2 or lower cannot have them.
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT", "NO AVX"):
        assert loader.cpu_bf16_native() is False
    else:
        assert isinstance(loader.cpu_bf16_native(), bool)
