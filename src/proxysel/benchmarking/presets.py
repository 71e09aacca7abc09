"""The bench presets: ``tiny`` (tests), ``synthetic`` and ``skewed`` (controlled pools), ``cpu`` (real
data), ``cpu-targeted`` (real data, a reference and eval set of one minority category), ``gpu``.

Each preset is a plain dict in the config's YAML layout; a config file given with ``--preset``
is merged over it section by section. docs/bench.md explains every choice and its cost.
"""

from __future__ import annotations

import copy
from typing import Any

_TINY: dict[str, Any] = {
    # Seconds on one core: 2-layer width-32 target, 120 short copy/reverse tasks. The target
    # recipe (4 epochs at lr 1e-2, batch 8) is strong enough that the full pool beats a 1%
    # random subset by a wide margin, which the tests check. The 8 reference tasks (4 per family,
    # clean, outside the pool and the eval set) let rds run end to end.
    "data": {"kind": "synthetic", "n_pool": 120, "n_eval": 24, "n_reference": 8,
             "families": ["copy", "reverse"], "difficulties": [1],
             "noise": {"wrong": 0.1, "garbage": 0.05, "duplicate": 0.05}},
    "proxy": {"model": "scratch", "scratch": {"hidden": 16, "layers": 1, "heads": 2}, "epochs": 2,
              "checkpoints": 4, "lr": 5e-3, "batch_size": 16, "grad_accum": 1, "warmup_ratio": 0.0,
              "max_length": 64},
    "target": {"model": "scratch", "scratch": {"hidden": 32, "layers": 2, "heads": 2}, "epochs": 4,
               "lr": 1e-2, "batch_size": 8, "grad_accum": 1, "warmup_ratio": 0.0, "max_length": 64},
    "selectors": [{"method": "lp_app", "within_clusters": False}, {"method": "s2l", "clusters": 4},
                  {"method": "rds"}],
    "budgets": [0.01, 0.3],
    "seeds": [0, 1],
    "eval": {"max_new_tokens": 12},
    "transfer": {"enabled": True, "epochs": 1},
    "threads": 1,
    "vocab_size": 300,
}

_SYNTHETIC: dict[str, Any] = {
    # About 30 minutes on one busy core. 1,200 tasks (4 families x 3 difficulties) with 10%
    # wrong answers, 5% garbage and 10% exact duplicates; 240 clean held-out tasks.
    # Proxy: 0.85M parameters (width 128, 4 layers); target: 10.0M (width 320, 8 layers);
    # both from scratch with a 320-token BPE trained on the pool.
    "data": {"kind": "synthetic", "n_pool": 1200, "n_eval": 240,
             "noise": {"wrong": 0.1, "garbage": 0.05, "duplicate": 0.1}},
    "proxy": {"model": "scratch", "scratch": {"hidden": 128, "layers": 4, "heads": 4}, "epochs": 3,
              "checkpoints": 8, "lr": 3e-3, "batch_size": 16, "grad_accum": 1, "warmup_ratio": 0.05,
              "max_length": 64},
    "target": {"model": "scratch", "scratch": {"hidden": 320, "layers": 8, "heads": 5}, "epochs": 3,
               "lr": 2e-3, "batch_size": 16, "grad_accum": 1, "warmup_ratio": 0.05, "max_length": 64},
    # k = 20: the papers' k = 100 was for pools of 50k+; on 1,200 it leaves clusters of ~12.
    "selectors": [{"method": "lp_app", "clusters": 20}, {"method": "s2l", "clusters": 20}],
    "budgets": [0.1, 0.3],
    "seeds": [0, 1, 2],
    "eval": {"max_new_tokens": 12},
    "transfer": {"enabled": True, "epochs": 1},
    "threads": 1,
}

_SKEWED: dict[str, Any] = {
    # Issue 13's generated pool (benchmarking/skewed.py): 2,000 records in 10 task families of four
    # shapes with Zipf-like sizes (copy 41% .. code 2.9%), 8% wrong answers, 5% garbage, 10%
    # near-duplicates (paraphrases) and 3% exact copies; reference 20 and eval 40 clean records per
    # family, disjoint from the pool. Calibrated with benchmarks/calibrate_skewed.py on 2 shared
    # cores, one thread (benchmarks/RESULTS.md, 3 seeds): the 0.47M target reaches 0.82-0.87 macro
    # exact match on the full pool (every family >= 0.47) in ~135 CPU s (7,500 steps; 3-3.5 min
    # wall beside other jobs); a 30% cell takes ~40 CPU s, a 10% cell ~14. A random 30% reaches
    # 0.26-0.42 and a random 10% ~0.1: the shared skills need the large families, the lookup
    # families most of their records. Proxy: 0.13M, 10 epochs, ~35 CPU s for train-proxy.
    "data": {"kind": "skewed", "n_pool": 2000, "n_eval": 400, "n_reference": 200,
             "noise": {"wrong": 0.08, "garbage": 0.05, "near_duplicate": 0.10, "duplicate": 0.03}},
    "proxy": {"model": "scratch", "scratch": {"hidden": 64, "layers": 2, "heads": 2}, "epochs": 10,
              "checkpoints": 8, "lr": 2e-3, "batch_size": 8, "grad_accum": 1, "warmup_ratio": 0.05,
              "max_length": 64, "keep_checkpoints": True},
    # a scratch proxy's first weights are random: the score signals (ppl, color's prior, rds) use its
    # weights after its 10 epochs on the pool
    "signals_from": "trained",
    # lr 2e-3 and above kept the target on its plateau (no copying) for the whole run; batch 8
    # gives 4x the steps of batch 32 for about the same CPU time, and the subsets need the steps
    # (20 epochs: full 0.81-0.91 in ~95 CPU s, but a random 30% only 0.19-0.25).
    "target": {"model": "scratch", "scratch": {"hidden": 128, "layers": 2, "heads": 4}, "epochs": 30,
               "lr": 1e-3, "batch_size": 8, "grad_accum": 1, "warmup_ratio": 0.05, "max_length": 64},
    # k = 20 clusters: the papers' 100 was for pools of 50k+. color and rds read the reference set.
    "selectors": [{"method": "lp_app", "clusters": 20}, {"method": "s2l", "clusters": 20},
                  {"method": "color"}, {"method": "rds"}],
    "budgets": [0.1, 0.3],
    "seeds": [0, 1, 2],
    "eval": {"exact_match": True, "max_new_tokens": 16},  # the longest answer is 11 tokens
    "transfer": {"enabled": True, "epochs": 1},
    "threads": 1,
    # every letter and digit one token, with its space too (at 320, " D" and " w" were two)
    "vocab_size": 512,
}

_CPU: dict[str, Any] = {
    # About 80 minutes on 2 cores (measured 2026-11-22, benchmarks/RESULTS.md: proxy signals 21 min,
    # transfer run 13 min, a full-data cell 5-7 min, a 30% cell 2-3 min). 400 real ShareGPT first
    # turns, 100 held out (the next 100 qualifying records, disjoint), each pair at most 800
    # characters (SmolLM2: p95 197 tokens): without the limit 101 of the 400 pairs did not fit 256
    # tokens with Gemma3 (226 with transformers 5.17), so they kept no response token and trained
    # nothing.
    "data": {"kind": "sharegpt", "n_pool": 400, "n_eval": 100, "max_chars": 800},
    "proxy": {"model": "smollm2-135m", "epochs": 1, "checkpoints": 4, "lr": 2e-5, "batch_size": 4,
              "grad_accum": 8, "max_length": 256, "dtype": "bfloat16"},
    "target": {"model": "gemma3-270m", "lora": True, "lora_r": 16, "lora_alpha": 32, "epochs": 1, "lr": 2e-4,
               "batch_size": 4, "grad_accum": 4, "max_length": 256, "dtype": "bfloat16"},
    "selectors": [{"method": "lp_app", "clusters": 20}, {"method": "s2l", "clusters": 20}],
    "budgets": [0.1, 0.3],
    "seeds": [0, 1, 2],
    "eval": {"exact_match": False},
    "transfer": {"enabled": True, "epochs": 1},
}

_CPU_TARGETED: dict[str, Any] = {
    # The cpu preset's pool (400 ShareGPT pairs of at most 800 characters; 28 of them, 7.0%, hold
    # code by groups.has_code), a reference set and an eval set of conversations with code:
    # the first 100 and the next 100 code pairs after the pool, at most 1,200 characters, none
    # repeating a pool pair. 454 such pairs exist (measured; docs/bench.md), so the category has
    # the >= 300 records the draws need; at most 800 characters there would be only 156. Code is
    # token-dense (median 272 Gemma3 tokens at <= 1,200 characters, 263 of 449 over 256), so both
    # models read 512 tokens; the pool fits 256 either way, so its training is the cpu preset's.
    # The eval set is one category, so the headline is the pooled loss over it (macro = pooled).
    # No transfer check: it would repeat the cpu preset's (same pool and models).
    "data": {"kind": "sharegpt", "n_pool": 400, "n_eval": 100, "n_reference": 100, "max_chars": 800,
             "category": "has_code", "category_max_chars": 1200},
    "proxy": {"model": "smollm2-135m", "epochs": 1, "checkpoints": 4, "lr": 2e-5, "batch_size": 4,
              "grad_accum": 8, "max_length": 512, "dtype": "bfloat16"},
    "target": {"model": "gemma3-270m", "lora": True, "lora_r": 16, "lora_alpha": 32, "epochs": 1, "lr": 2e-4,
               "batch_size": 4, "grad_accum": 4, "max_length": 512, "dtype": "bfloat16"},
    "selectors": [{"method": "lp_app", "clusters": 20}, {"method": "s2l", "clusters": 20},
                  {"method": "color"}, {"method": "rds"}],
    "budgets": [0.3],
    "seeds": [0, 1, 2],
    "eval": {"exact_match": False},
    "transfer": {"enabled": False},
}

_GPU: dict[str, Any] = {
    # Paper scale, for one accelerator (not run here). Point data.pool / data.eval at your pool
    # (e.g. Alpaca-52k) and a held-out split; the models need the hub or its local cache.
    "data": {"kind": "files", "pool": "data/pool.jsonl", "eval": "data/eval.jsonl"},
    "proxy": {"model": "EleutherAI/pythia-160m", "epochs": 3, "checkpoints": 8, "lr": 2e-5, "batch_size": 8,
              "grad_accum": 4, "max_length": 512, "dtype": "bfloat16"},
    "target": {"model": "meta-llama/Llama-3.2-1B", "epochs": 3, "lr": 2e-5, "batch_size": 8, "grad_accum": 4,
               "max_length": 512, "dtype": "bfloat16"},
    "selectors": [{"method": "lp", "clusters": 100}, {"method": "lp_app", "clusters": 100},
                  {"method": "s2l", "clusters": 100}],
    "budgets": [0.05, 0.1, 0.3],
    "seeds": [0, 1, 2],
    "eval": {"exact_match": False, "batch_tokens": 32768},
    "transfer": {"enabled": True, "epochs": 3},
    "device": "cuda",
}

PRESETS: dict[str, dict[str, Any]] = {"tiny": _TINY, "synthetic": _SYNTHETIC, "skewed": _SKEWED, "cpu": _CPU,
                                      "cpu-targeted": _CPU_TARGETED, "gpu": _GPU}


def preset_dict(name: str) -> dict[str, Any]:
    """A deep copy of preset ``name`` (KeyError if unknown)."""
    return copy.deepcopy(PRESETS[name])
