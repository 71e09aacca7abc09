"""CoLoR-Filter on the tiny model: the conditional model is the prior fine-tuned on the reference set,
and the score is two plain ``model(labels=...)`` losses at batch size 1, prior minus conditional."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import plain_loss, write_qa_pool  # noqa: E402
from proxysel.data import read_pool  # noqa: E402
from proxysel.dynamics.train import TrainConfig  # noqa: E402
from proxysel.engine import score_losses  # noqa: E402
from proxysel.models.loader import load_causal_lm  # noqa: E402
from proxysel.models.render import Renderer  # noqa: E402
from proxysel.signals.color import color_losses, color_scores, fine_tune_conditional  # noqa: E402

REFERENCE = [{"instruction": "What is two plus two?", "output": "Two plus two is four."},
             {"instruction": "What is two plus four?", "output": "Two plus four is six."},
             {"instruction": "Sort the numbers 3 1 2.", "output": "The sorted numbers are 1 2 3."},
             {"instruction": "Reverse the word cat.", "output": "The reversed word is tac."}]
CONFIG = TrainConfig(epochs=3, batch_size=2, grad_accum=1, lr=5e-3, warmup_ratio=0.0, checkpoints=0, seed=0)


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("color")
    (d / "ref.jsonl").write_text("".join(json.dumps(r) + "\n" for r in REFERENCE), encoding="utf-8")
    lm = load_causal_lm(str(tiny_model_dir))
    renderer = Renderer(lm.tokenizer, max_length=96)
    reference = read_pool(d / "ref.jsonl").examples
    pool = read_pool(write_qa_pool(d / "pool.jsonl", 6, long_every=6)).examples + reference
    conditional, tokens = fine_tune_conditional(lm, renderer, reference, CONFIG, d / "state")
    return lm, renderer, pool, conditional, d, tokens


def test_scores_are_two_plain_losses_at_batch_size_one(setup):
    lm, renderer, pool, conditional, *_ = setup
    encoded = [renderer.encode(e) for e in pool]
    cols = color_losses(lm.model, conditional, encoded, pad_id=lm.tokenizer.pad_token_id, batch_tokens=4096)
    assert encoded[5].truncated and np.isnan(cols["color"][5])  # the long prompt lost its response
    for i, enc in enumerate(encoded):
        if enc.truncated:
            continue
        prior, cond = plain_loss(lm.model, enc), plain_loss(conditional, enc)
        assert abs(cols["color_loss_prior"][i] - prior) < 1e-5
        assert abs(cols["color_loss_conditional"][i] - cond) < 1e-5
        assert abs(cols["color"][i] - (prior - cond)) < 1e-5


def test_fine_tuning_on_the_reference_lowers_its_loss_and_leaves_the_prior(setup, tiny_model_dir):
    lm, renderer, pool, conditional, *_ = setup
    fresh = load_causal_lm(str(tiny_model_dir)).model
    for (name, p), q in zip(lm.model.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), f"the prior's {name} changed"
    assert not all(torch.equal(p, q) for p, q in zip(conditional.parameters(), fresh.parameters()))
    encoded = [renderer.encode(e) for e in pool]
    color = color_losses(lm.model, conditional, encoded, pad_id=lm.tokenizer.pad_token_id)["color"]
    ref, other = color[-len(REFERENCE):], color[:-len(REFERENCE)]
    assert (ref > 0.1).all(), ref  # 3 epochs at lr 5e-3 on these 4 examples
    assert ref.min() > np.nanmax(other)  # and the reference-like examples gain the most


def test_a_rerun_loads_the_finished_state(setup):
    lm, renderer, pool, conditional, d, tokens = setup
    again, again_tokens = fine_tune_conditional(lm, renderer, pool[-len(REFERENCE):], CONFIG, d / "state")
    assert all(torch.equal(p, q) for p, q in zip(again.parameters(), conditional.parameters()))
    assert again_tokens == tokens  # the finished run's history, not 0 for a process that trained nothing


def test_the_fine_tune_reports_every_input_token_of_every_epoch(setup):
    lm, renderer, pool, conditional, d, tokens = setup
    encoded = [renderer.encode(e) for e in pool[-len(REFERENCE):]]
    assert tokens == CONFIG.epochs * sum(e.n_tokens for e in encoded if not e.truncated) > 0


def test_losses_of_other_encodings_are_refused(setup):
    lm, renderer, pool, conditional, *_ = setup
    encoded = [renderer.encode(e) for e in pool[:3]]
    a = score_losses(lm.model, encoded, pad_id=lm.tokenizer.pad_token_id)
    b = score_losses(conditional, encoded[:2], pad_id=lm.tokenizer.pad_token_id)
    with pytest.raises(ValueError, match="not over the same encoded examples"):
        color_scores(a, b)
