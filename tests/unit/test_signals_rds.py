"""RDS+ embeddings against a hand computation: a plain forward with ``output_hidden_states`` at batch
size 1, the official SGPT position weights applied by hand, then the L2 norm."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from proxysel.data import read_pool  # noqa: E402
from proxysel.engine import plan_batches  # noqa: E402
from proxysel.models.loader import load_causal_lm  # noqa: E402
from proxysel.models.render import Renderer  # noqa: E402
from proxysel.signals.rds import position_weights, rds_embed  # noqa: E402

RECORDS = [
    {"instruction": "What is two plus two?", "output": "Two plus two is four."},
    {"instruction": "Sort the numbers.", "input": "3 1 2", "output": "1 2 3"},
    {"instruction": "Name a colour.", "output": "Blue is a colour, and so is red. The quick brown fox."},
    {"instruction": "Reverse the word cat.", "output": "tac"},
    {"text": "The quick brown fox jumps over the lazy dog. What is two plus two? Four."},
]


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return load_causal_lm(str(tiny_model_dir))


@pytest.fixture(scope="module")
def encoded(lm, tmp_path_factory):
    p = tmp_path_factory.mktemp("rds") / "pool.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    renderer = Renderer(lm.tokenizer, max_length=512)
    return [renderer.encode(e) for e in read_pool(p).examples]


def by_hand(model, enc) -> np.ndarray:
    """The official recipe at batch size 1: hidden_states[-1] of a plain forward, weights
    (j + 1) / sum over positions j = 0..T-1, weighted sum, divided by its L2 norm (float64)."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([enc.input_ids]), output_hidden_states=True)
    h = out.hidden_states[-1][0].double().numpy()  # (T, d)
    t = h.shape[0]
    w = np.arange(1, t + 1, dtype=np.float64)
    w /= w.sum()
    v = (w[:, None] * h).sum(axis=0)
    return v / np.linalg.norm(v)


def test_batch_size_one_matches_the_hand_computation(lm, encoded):
    emb = rds_embed(lm.model, encoded, pad_id=lm.tokenizer.pad_token_id, batch_tokens=1)
    assert emb.dtype == np.float32 and emb.shape == (len(encoded), lm.model.config.hidden_size)
    for i, enc in enumerate(encoded):
        np.testing.assert_allclose(emb[i], by_hand(lm.model, enc), atol=1e-6, err_msg=f"row {i}")
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)


def test_padding_does_not_change_a_row(lm, encoded):
    lengths = [e.n_tokens for e in encoded]
    assert len(set(lengths)) > 1  # examples of different lengths, so the batch is padded
    alone = rds_embed(lm.model, encoded, pad_id=lm.tokenizer.pad_token_id, batch_tokens=1)
    together = rds_embed(lm.model, encoded, pad_id=lm.tokenizer.pad_token_id, batch_tokens=100_000)
    assert len(plan_batches(lengths, 100_000)) == 1  # really one padded batch
    assert np.abs(alone - together).max() < 1e-5


def test_the_last_token_weighs_most_and_padding_nothing():
    w = position_weights(torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]))
    np.testing.assert_allclose(w.numpy(), [[1 / 6, 2 / 6, 3 / 6, 0], [0.1, 0.2, 0.3, 0.4]], rtol=1e-6)


def test_model_mode_is_restored(lm, encoded):
    lm.model.train()
    try:
        rds_embed(lm.model, encoded[:1], pad_id=lm.tokenizer.pad_token_id)
        assert lm.model.training
    finally:
        lm.model.eval()
