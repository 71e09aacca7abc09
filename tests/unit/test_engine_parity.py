"""The engine's per-example loss equals a plain ``model(input_ids, labels=labels).loss`` at batch size 1."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import plain_loss  # noqa: E402
from proxysel.data import read_pool  # noqa: E402
from proxysel.engine import plan_batches, score_losses  # noqa: E402
from proxysel.models.loader import load_causal_lm  # noqa: E402
from proxysel.models.render import IGNORE, Renderer  # noqa: E402

RECORDS = {
    "alpaca": [
        {"instruction": "What is two plus two?", "input": "", "output": "Two plus two is four."},
        {"instruction": "Sort the numbers.", "input": "3 1 2", "output": "1 2 3"},
    ],
    "sharegpt": [
        {"id": "s1", "conversations": [{"from": "human", "value": "Name a colour."},
                                       {"from": "gpt", "value": "Blue is a colour."},
                                       {"from": "human", "value": "Another?"},
                                       {"from": "gpt", "value": "Red, and so is green."}]},
        {"id": "s2", "conversations": [{"from": "system", "value": "Be brief."},
                                       {"from": "human", "value": "Reverse cat."},
                                       {"from": "gpt", "value": "tac"}]},
    ],
    "messages": [
        {"messages": [{"role": "user", "content": "The quick brown fox?"},
                      {"role": "assistant", "content": "jumps over the lazy dog."}]},
    ],
    "prompt-completion": [
        {"prompt": "Reverse the word cat.", "completion": "The reversed word is tac."},
    ],
    "text": [
        {"text": "The quick brown fox jumps over the lazy dog. What is two plus two? Four."},
    ],
}


def _pool(tmp_path, records):
    p = tmp_path / "pool.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return read_pool(p)


def _check_parity(lm, examples, template="auto", batch_tokens=4096, tol=1e-5):
    r = Renderer(lm.tokenizer, max_length=512, template=template)
    enc = [r.encode(e) for e in examples]
    res = score_losses(lm.model, enc, pad_id=lm.tokenizer.pad_token_id, batch_tokens=batch_tokens)
    for i, e in enumerate(enc):
        assert not e.truncated
        assert abs(res.loss[i] - plain_loss(lm.model, e)) < tol, examples[i].id
    return enc, res


@pytest.mark.parametrize("layout", sorted(RECORDS))
@pytest.mark.parametrize("template", ["chat", "alpaca"])
def test_parity_every_layout_tiny(tmp_path, tiny_model_dir, layout, template):
    lm = load_causal_lm(str(tiny_model_dir))
    _check_parity(lm, _pool(tmp_path, RECORDS[layout]).examples, template=template)


def test_parity_mixed_batch_tiny(tmp_path, tiny_model_dir, monkeypatch):
    """Examples of different lengths padded together still match batch size 1."""
    import proxysel.engine as engine

    monkeypatch.setattr(engine, "CPU_BATCH_COST", None)  # the greedy plan: all of them in one batch
    lm = load_causal_lm(str(tiny_model_dir))
    records = [r for rs in RECORDS.values() for r in rs]
    enc, res = _check_parity(lm, _pool(tmp_path, records).examples, batch_tokens=10_000)
    assert len(plan_batches([e.n_tokens for e in enc], 10_000)) == 1  # really batched together


@pytest.mark.model
@pytest.mark.parametrize("layout", sorted(RECORDS))
def test_parity_every_layout_smollm2(tmp_path, smollm2, layout):
    _check_parity(smollm2, _pool(tmp_path, RECORDS[layout]).examples)


def test_masking_chat_template_scores_assistant_turns_only(tmp_path, tiny_model_dir):
    lm = load_causal_lm(str(tiny_model_dir))
    ex = _pool(tmp_path, RECORDS["sharegpt"][:1]).examples[0]
    enc = Renderer(lm.tokenizer).encode(ex)
    scored = lm.tokenizer.decode([t for t in enc.labels if t != IGNORE])
    assert scored == "Blue is a colour.<|im_end|>Red, and so is green.<|im_end|>"
    # Prompt and response were tokenized together: the ids are those of the whole rendering.
    full = lm.tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in ex.messages],
                                            tokenize=False)
    assert enc.input_ids == lm.tokenizer(full, add_special_tokens=False)["input_ids"]


def test_masking_alpaca_template(tmp_path, tiny_base_model_dir):
    lm = load_causal_lm(str(tiny_base_model_dir))
    ex = _pool(tmp_path, RECORDS["alpaca"][1:]).examples[0]
    r = Renderer(lm.tokenizer)
    assert r.template == "alpaca"
    text, spans, _ = r.render(ex)
    assert text.startswith("Below is an instruction that describes a task, paired with an input")
    assert "### Input:\n3 1 2\n\n### Response:1 2 3<|im_end|>" in text
    enc = r.encode(ex)
    assert lm.tokenizer.decode([t for t in enc.labels if t != IGNORE]).strip() == "1 2 3<|im_end|>"


def test_text_layout_scores_every_token(tmp_path, tiny_model_dir):
    lm = load_causal_lm(str(tiny_model_dir))
    enc = Renderer(lm.tokenizer).encode(_pool(tmp_path, RECORDS["text"]).examples[0])
    assert enc.n_response_tokens == enc.n_tokens - 1  # all but the first, which nothing predicts


def test_truncated_example_is_nan_not_zero(tmp_path, tiny_model_dir):
    lm = load_causal_lm(str(tiny_model_dir))
    long_prompt = {"instruction": "word " * 400, "input": "", "output": "short answer"}
    ex = _pool(tmp_path, [long_prompt, RECORDS["alpaca"][0]]).examples
    r = Renderer(lm.tokenizer, max_length=64)
    enc = [r.encode(e) for e in ex]
    assert enc[0].truncated and enc[0].n_tokens == 64 and enc[0].n_response_tokens == 0
    res = score_losses(lm.model, enc, pad_id=lm.tokenizer.pad_token_id)
    assert np.isnan(res.loss[0]) and np.isfinite(res.loss[1])
    assert res.truncated.tolist() == [True, False]


def test_plan_batches_respects_token_budget():
    lengths = [5, 100, 30, 30, 7, 64, 1]
    batches = plan_batches(lengths, batch_tokens=128)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 128
    assert batches[0] == [1]  # longest first, alone (2 x 100 > 128)


def test_parity_cheapest_plan_tiny(tmp_path, tiny_model_dir):
    """The CPU plan (padding + a cost per batch) cuts these examples into several batches of several
    examples each, and every loss still matches batch size 1."""
    from proxysel.engine import CPU_BATCH_COST

    lm = load_causal_lm(str(tiny_model_dir))
    records = [r for rs in RECORDS.values() for r in rs]
    enc, _ = _check_parity(lm, _pool(tmp_path, records).examples, batch_tokens=10_000)
    plan = plan_batches([e.n_tokens for e in enc], 10_000, batch_cost=CPU_BATCH_COST)
    assert len(plan) > 1 and all(len(b) > 1 for b in plan)


def test_plan_batches_with_a_batch_cost_minimises_padding_plus_cost():
    # lengths 100, 90, 10, 10 under 1000 tokens: one batch pads to 4 x 100 = 400; [100, 90] + [10, 10]
    # pads to 200 + 20 = 220. A batch costing 50 tokens makes the second cheaper (320 < 450); one
    # costing 1000 the first (1400 < 2220).
    lengths = [10, 100, 10, 90]
    assert plan_batches(lengths, 1000, batch_cost=50) == [[1, 3], [0, 2]]
    assert plan_batches(lengths, 1000, batch_cost=1000) == [[1, 3, 0, 2]]
    assert plan_batches(lengths, 1000, batch_cost=0) == [[1], [3], [0, 2]]  # equal lengths pad nothing
    # the budget still binds: 3 x 100 > 250, and an example over it is alone
    assert plan_batches(lengths, 250, batch_cost=1000) == [[1, 3], [0, 2]]
    assert plan_batches([300, 5], 250, batch_cost=1000) == [[0], [1]]
    assert plan_batches([], 250, batch_cost=10) == []


def test_attention_mask_is_dropped_only_for_right_padding(tiny_model_dir):
    """Left padding keeps its mask (and its result): only right padding is exact without one."""
    from proxysel.engine import batch_token_losses, is_right_padded

    assert is_right_padded(torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]))
    assert not is_right_padded(torch.tensor([[1, 1, 1], [0, 1, 1]]))
    assert not is_right_padded(torch.tensor([[1, 0, 1]]))
    lm = load_causal_lm(str(tiny_model_dir))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    tgt = torch.tensor([[-100, 7, 8, 9, -100]])
    with torch.inference_mode():
        ref, _ = batch_token_losses(lm.model, ids, torch.ones_like(ids), tgt)
        left = torch.tensor([[0, 0, 5, 6, 7, 8, 9]])  # the same example after two pad tokens
        got, _ = batch_token_losses(lm.model, left, torch.tensor([[0, 0, 1, 1, 1, 1, 1]]),
                                    torch.tensor([[-100, -100, -100, 7, 8, 9, -100]]))
    assert torch.allclose(ref, got, atol=1e-5)


def test_out_of_memory_halves_the_token_budget_and_retries(tmp_path, tiny_model_dir, monkeypatch, caplog):
    import proxysel.engine as engine

    monkeypatch.setattr(engine, "CPU_BATCH_COST", None)  # the greedy plan: one batch of all at 100_000
    lm = load_causal_lm(str(tiny_model_dir))
    records = [r for rs in RECORDS.values() for r in rs]
    enc = [Renderer(lm.tokenizer).encode(e) for e in _pool(tmp_path, records).examples]
    ref = score_losses(lm.model, enc, pad_id=lm.tokenizer.pad_token_id, batch_tokens=1)  # one per batch
    real = engine.batch_token_losses
    failed, done = [], []

    def flaky(model, ids, att, tgt, **kw):
        if ids.shape[0] > 2:  # "memory" fits at most two examples per batch
            failed.append(ids.shape[0])
            raise MemoryError("injected")
        done.append(ids.shape[0])
        return real(model, ids, att, tgt, **kw)

    monkeypatch.setattr(engine, "batch_token_losses", flaky)
    res = engine.score_losses(lm.model, enc, pad_id=lm.tokenizer.pad_token_id, batch_tokens=100_000)
    np.testing.assert_allclose(res.loss, ref.loss, atol=1e-5)
    assert failed[0] == len(enc) and len(failed) <= 3  # halving, not one retry per example
    assert sum(done) == len(enc)  # every example scored exactly once
    assert "out of memory" in caplog.text


def test_out_of_memory_of_a_single_example_is_raised(tmp_path, tiny_model_dir, monkeypatch):
    import proxysel.engine as engine

    lm = load_causal_lm(str(tiny_model_dir))
    enc = [Renderer(lm.tokenizer).encode(e) for e in _pool(tmp_path, RECORDS["alpaca"]).examples]

    def always(*a, **k):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine, "batch_token_losses", always)
    with pytest.raises(RuntimeError, match="out of memory"):
        engine.score_losses(lm.model, enc, pad_id=lm.tokenizer.pad_token_id, batch_tokens=64)


def _plain_token_losses(model, enc) -> np.ndarray:
    """Every scored token's loss from a plain forward at batch size 1 (HF's shift: the logits at j
    predict labels[j + 1])."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([enc.input_ids])).logits[0, :-1].float()
    labels = torch.tensor(enc.labels[1:])
    losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none", ignore_index=IGNORE)
    return losses[labels != IGNORE].double().numpy()


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_top_losses_match_a_plain_forward_in_a_mixed_batch(tmp_path, tiny_model_dir, monkeypatch, fraction):
    """mink's engine: the mean of the max(1, floor(fraction T)) highest token losses and the highest,
    against token losses from a plain forward; the token losses' mean is the plain loss."""
    import proxysel.engine as engine
    from proxysel.engine import score_top_losses

    monkeypatch.setattr(engine, "CPU_BATCH_COST", None)  # one padded batch of every length
    lm = load_causal_lm(str(tiny_model_dir))
    examples = _pool(tmp_path, [r for rs in RECORDS.values() for r in rs]).examples
    enc = [Renderer(lm.tokenizer, max_length=512).encode(e) for e in examples]
    top, highest = score_top_losses(lm.model, enc, fraction, pad_id=lm.tokenizer.pad_token_id,
                                    batch_tokens=10_000)
    for i, e in enumerate(enc):
        tokens = _plain_token_losses(lm.model, e)
        assert abs(tokens.mean() - plain_loss(lm.model, e)) < 1e-5  # the reference is the plain loss's
        k = max(1, int(fraction * len(tokens)))
        assert abs(top[i] - np.sort(tokens)[::-1][:k].mean()) < 1e-5, examples[i].id
        assert abs(highest[i] - tokens.max()) < 1e-5
    if fraction == 0.2:  # some answers have fewer than 5 tokens: they take their highest one
        assert any(int(fraction * e.n_response_tokens) == 0 for e in enc)
