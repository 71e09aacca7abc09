"""The CUDA paths against the CPU ones: scoring, proxy training and `bench` on a tiny random-init Llama.

Marked ``gpu``: `make test` deselects them and they skip without a CUDA device. Run them on a GPU
machine with ``pytest -m gpu tests/gpu``.
"""

from __future__ import annotations

import csv

import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

import proxysel  # noqa: E402
from conftest import plain_loss, write_qa_pool  # noqa: E402
from proxysel.cli.main import main  # noqa: E402
from proxysel.data import read_pool  # noqa: E402
from proxysel.models.render import Renderer  # noqa: E402
from proxysel.store import RunFolder  # noqa: E402

TINY = dict(epochs=2, checkpoints=4, batch_size=2, grad_accum=4, lr=1e-2, max_length=64, shard_size=16)


def _column(run, name):
    return np.array([np.nan if v is None else v
                     for v in pq.read_table(run / "scores.parquet").column(name).to_pylist()],
                    dtype=float)


def test_cuda_losses_match_a_plain_cpu_loop(tmp_path, tiny_model_dir):
    """Per-example loss scored on the GPU equals model(labels=...) on the CPU at batch size 1."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = write_qa_pool(tmp_path / "pool.jsonl", 40)
    run = proxysel.score(data, out=tmp_path / "run", model=str(tiny_model_dir), signals=["loss"],
                         device="cuda", max_length=64)
    got = _column(run, "loss")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    renderer = Renderer(AutoTokenizer.from_pretrained(tiny_model_dir), max_length=64, template="auto")
    ids = pq.read_table(run / "scores.parquet").column("id").to_pylist()
    by_id = {e.id: e for e in read_pool(data).examples}
    want = []
    for i in ids:
        enc = renderer.encode(by_id[i])
        want.append(plain_loss(model, enc))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_train_proxy_on_cuda_follows_the_cpu_run(tmp_path, tiny_model_dir):
    """Same data, seed and recipe on both devices: the same perplexities up to float noise, and the
    same lp_app selection."""
    data = write_qa_pool(tmp_path / "pool.jsonl", 40)
    runs = {dev: proxysel.train_proxy(data, out=tmp_path / dev, model=str(tiny_model_dir), device=dev, **TINY)
            for dev in ("cpu", "cuda")}
    for col in ("lp_app", "lp"):
        np.testing.assert_allclose(_column(runs["cuda"], col), _column(runs["cpu"], col),
                                   rtol=2e-3, atol=2e-3)
    for run in runs.values():
        proxysel.select(run, method="lp_app", budget=0.3, name="s", within_clusters=False)
    picked = {dev: set(RunFolder(run).selection_ids("s")) for dev, run in runs.items()}
    assert len(picked["cuda"] & picked["cpu"]) >= 0.9 * len(picked["cpu"])


def test_bench_tiny_on_cuda(tmp_path):
    out = tmp_path / "bench"
    assert main(["-q", "bench", "--preset", "tiny", "--out", str(out), "device=cuda", "seeds=[0]",
                 "transfer.enabled=false"]) == 0
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    loss = {(r["selector"], r["budget"]): float(r["eval_loss"]) for r in rows}
    assert loss[("full", "")] < loss[("random", "0.01")] - 0.5 < loss[("base", "")]
