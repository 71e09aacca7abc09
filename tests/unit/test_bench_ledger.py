"""The compute ledger (benchmarking.ledger): hand-worked FLOPs, N of real torch models, and the
records of a real tiny train-proxy run against token counts computed independently."""

from __future__ import annotations

import json

import pytest

from proxysel.benchmarking.ledger import (
    cost_share,
    forward_flops,
    model_params,
    proxy_costs_from_run,
    selection_cost,
    train_flops,
)

torch = pytest.importorskip("torch")


# ------------------------------------------------------------------------------------ arithmetic


def test_flops_by_hand():
    assert train_flops(1_000, 50) == 300_000          # 6 * 1000 * 50
    assert train_flops(1_000, 50, lora=True) == 200_000  # 4 * 1000 * 50
    assert forward_flops(1_000, 30) == 60_000         # 2 * 1000 * 30
    assert train_flops(134_515_008, 10**9) == 807_090_048 * 10**9  # exact: Python ints
    assert cost_share(360_000, 7_200_000) == 5.0
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="integer >= 0"):
            train_flops(bad, 10)
    with pytest.raises(ValueError, match="must be > 0"):
        cost_share(1.0, 0)


def test_selection_cost_sums_the_stages_it_is_given():
    records = {
        "train-proxy": {"model": "proxy", "lora": False, "train_tokens": 50, "forward_tokens": 30,
                        "passes": 3, "seconds": 12.5, "missing": []},
        "embedding": {"model": "minilm", "lora": False, "train_tokens": 0, "forward_tokens": None,
                      "passes": 0, "seconds": 1.25, "missing": ["forward_tokens (not recorded)"]},
        "loss": {"model": "judge", "lora": False, "train_tokens": 0, "forward_tokens": 40, "passes": 1,
                 "seconds": None, "missing": []},
    }
    row = selection_cost(records, {"proxy": 1_000, "minilm": 10})
    # train-proxy: 6*1000*50 + 2*1000*30 = 360,000; embedding: no tokens; loss: no N for "judge"
    assert (row["train_flops"], row["forward_flops"], row["flops"]) == (300_000, 60_000, 360_000)
    assert (row["train_tokens"], row["forward_tokens"], row["seconds"]) == (50, 70, 13.75)
    assert row["stages"] == ["embedding", "loss", "train-proxy"]
    assert row["unknown"] == ["embedding: forward_tokens (not recorded)", "loss: seconds not recorded",
                              "loss: no parameter count for model 'judge'"]
    lora = selection_cost({"train-proxy": {**records["train-proxy"], "lora": True}}, {"proxy": 1_000})
    assert lora["flops"] == 4 * 1000 * 50 + 2 * 1000 * 30 and lora["unknown"] == []
    assert selection_cost({}, {})["flops"] == 0  # random reads no stage


# ------------------------------------------------------------------------------------------ N


def test_n_of_a_tied_llama_is_every_parameter(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from proxysel.models.scratch import llama_parameters

    m = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = m.config
    assert cfg.tie_word_embeddings
    expected = llama_parameters(cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size)
    assert model_params(m) == expected == sum(p.numel() for p in m.parameters())


def test_n_of_an_untied_llama_leaves_out_the_input_table_only():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=50, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False)
    m = LlamaForCausalLM(cfg)
    # layer: q,k,v,o 4*8*8 + mlp 3*8*16 + 2 norms of 8; final norm 8; head 50*8; table 50*8 left out
    assert model_params(m) == 4 * 64 + 3 * 128 + 16 + 8 + 400
    assert model_params(m) == sum(p.numel() for p in m.parameters()) - 400


def test_n_leaves_out_learned_position_embeddings():
    from transformers import GPT2Config, GPT2LMHeadModel

    m = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=32, n_embd=8, n_layer=1, n_head=2))
    total = sum(p.numel() for p in m.parameters())  # wte is tied to the head, so counted once
    assert model_params(m) == total - 32 * 8


# ---------------------------------------------------------------------------- a real run's records

TINY = dict(epochs=2, batch_size=2, grad_accum=2, lr=1e-2, max_length=64, shard_size=8)


def _untruncated_tokens(data, model_dir) -> tuple[int, int]:
    """(input tokens of the rows a pass runs, truncated rows), from a fresh Renderer over the pool."""
    from proxysel.data import read_pool
    from proxysel.models.loader import load_causal_lm
    from proxysel.models.render import Renderer

    r = Renderer(load_causal_lm(str(model_dir)).tokenizer, max_length=TINY["max_length"])
    enc = [r.encode(e) for e in read_pool(data).examples]
    return sum(len(e.input_ids) for e in enc if not e.truncated), sum(e.truncated for e in enc)


def _embedder_tokens(data) -> int:
    """Tokens the bundled MiniLM runs over the pool's embedding texts, from its own tokenizer."""
    from transformers import AutoTokenizer

    from proxysel.data import read_pool
    from proxysel.data.text import embedding_text
    from proxysel.models.bundled import bundled_path

    tok = AutoTokenizer.from_pretrained(bundled_path("minilm"))
    texts = [embedding_text(e) for e in read_pool(data).examples]
    return sum(len(ids) for ids in tok(texts, truncation=True, max_length=256)["input_ids"])


def _ifd_tokens(data, model_dir) -> int:
    """IFD's two passes: the rendering without end-of-turn and the response alone, untruncated rows."""
    from proxysel.data import read_pool
    from proxysel.data.text import response_text
    from proxysel.models.loader import load_causal_lm
    from proxysel.models.render import Renderer

    r = Renderer(load_causal_lm(str(model_dir)).tokenizer, max_length=TINY["max_length"], end_of_turn=False)
    examples = read_pool(data).examples
    passes = [[r.encode(e) for e in examples], [r.encode_text(response_text(e)) for e in examples]]
    return sum(len(e.input_ids) for enc in passes for e in enc if not e.truncated)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, tiny_model_dir):
    import proxysel
    from conftest import write_qa_pool

    d = tmp_path_factory.mktemp("ledger")
    data = write_qa_pool(d / "pool.jsonl", 20, long_every=10)  # 2 of 20 lose their response
    offline = proxysel.train_proxy(data, out=d / "offline", model=str(tiny_model_dir), checkpoints=3, **TINY)
    proxysel.score(data, out=offline, signals=["loss", "embedding", "ifd"], model=str(tiny_model_dir),
                   max_length=TINY["max_length"], shard_size=TINY["shard_size"])
    online = proxysel.train_proxy(data, out=d / "online", model=str(tiny_model_dir), checkpoints=0,
                                  online=True, **TINY)
    return data, offline, online


def test_train_proxy_records_match_an_independent_token_count(tiny_runs, tiny_model_dir):
    data, offline, online = tiny_runs
    per_pass, n_truncated = _untruncated_tokens(data, tiny_model_dir)
    assert n_truncated == 2
    costs = proxy_costs_from_run(offline)
    assert sorted(costs) == ["embedding", "ifd", "loss", "train-proxy"]
    tp = costs["train-proxy"]
    # 18 trainable / batch 4 -> 5 steps an epoch, 10 in all; 3 checkpoints (0, 5, 10) = the passes
    plan = json.loads((offline / "manifest.json").read_text())["stages"]["train-proxy"]["plan"]
    assert plan["pass_steps"] == [0, 5, 10]
    assert tp["model"] == str(tiny_model_dir) and tp["lora"] is False
    assert tp["train_tokens"] == TINY["epochs"] * per_pass  # every trainable example once an epoch
    assert tp["forward_tokens"] == 3 * per_pass and tp["passes"] == 3
    assert tp["seconds"] > 0 and tp["missing"] == []
    assert costs["loss"]["forward_tokens"] == per_pass and costs["loss"]["train_tokens"] == 0
    emb = costs["embedding"]
    assert emb["model"] == "minilm" and emb["kind"] == "embedder" and emb["missing"] == []
    assert emb["forward_tokens"] == _embedder_tokens(data) and emb["seconds"] >= 0
    assert costs["ifd"]["forward_tokens"] == _ifd_tokens(data, tiny_model_dir) > per_pass
    # --online: P_1..P_n come from the training forward passes; only step 0 is a scoring pass
    on = proxy_costs_from_run(online)["train-proxy"]
    assert (on["train_tokens"], on["forward_tokens"], on["passes"]) == (2 * per_pass, per_pass, 1)


def test_selection_cost_of_a_real_run(tiny_runs, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    data, offline, _ = tiny_runs
    per_pass, _ = _untruncated_tokens(data, tiny_model_dir)
    n = model_params(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    costs = proxy_costs_from_run(offline)
    n_minilm = 22_000_000  # any N: the arithmetic is what is checked
    row = selection_cost({k: costs[k] for k in ("train-proxy", "embedding")},
                         {str(tiny_model_dir): n, "minilm": n_minilm})
    assert row["flops"] == 6 * n * 2 * per_pass + 2 * n * 3 * per_pass + 2 * n_minilm * _embedder_tokens(data)
    assert row["seconds"] == pytest.approx(costs["train-proxy"]["seconds"] + costs["embedding"]["seconds"],
                                           abs=2e-3)
    assert row["unknown"] == []


def test_shards_from_before_token_counts_are_recounted_or_named(tiny_runs, tmp_path):
    import shutil

    data, offline, _ = tiny_runs
    old = tmp_path / "old"
    shutil.copytree(offline, old)
    for marker in (old / "stages").glob("*/shard-*.done"):  # markers as proxysel wrote them before
        m = json.loads(marker.read_text())
        m.pop("forward_tokens", None)
        marker.write_text(json.dumps(m))
    costs, new = proxy_costs_from_run(old), proxy_costs_from_run(offline)
    assert costs["loss"]["forward_tokens"] == new["loss"]["forward_tokens"]  # n_tokens, 1 pass
    for stage in ("embedding", "ifd"):
        assert costs[stage]["forward_tokens"] is None
        assert any("before proxysel kept token counts" in m for m in costs[stage]["missing"])


def test_n_of_the_bundled_proxy(smollm2):
    # FIELD-NOTES: SmolLM2-135M-Instruct has 134,515,008 parameters with tied embeddings, so its N is
    # all of them; Kaplan's non-embedding count would leave out the 49,152 x 576 table.
    assert model_params(smollm2.model) == 134_515_008
    assert smollm2.model.get_input_embeddings().weight.numel() == 49_152 * 576
