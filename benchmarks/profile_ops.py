"""Where scoring and proxy training spend their CPU time: torch.profiler's top operators (issue 17).

    .venv/bin/python benchmarks/profile_ops.py [--what score-bf16,score-fp32,train-bf16,trainer-bf16] [--n 24]

score-*: one ``engine.score_losses`` call over the first ``--n`` ShareGPT demo conversations (max
length 512) with SmolLM2-135M held in that dtype, after a warm-up call. train-bf16 / train-fp32: one
``dynamics.train.backward`` over an effective batch of 32 conversations (max length 256), in bf16
autocast or fp32, then the optimizer step, after a warm-up step. trainer-bf16 / trainer-fp32: the
second optimizer step of the HF Trainer on the same kind of batch (benchmarks/train_throughput.py's
setup). Prints, per run, a markdown table of the operators with the most self CPU time (what the
operator did itself, not its children) and their share.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def top_table(prof, top: int) -> str:
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    lines = ["| operator | calls | self CPU ms | share |", "|---|---|---|---|"]
    for e in events[:top]:
        lines.append(f"| `{e.key}` | {e.count} | {e.self_cpu_time_total / 1e3:.0f} | "
                     f"{100 * e.self_cpu_time_total / total:.1f}% |")
    lines.append(f"| all operators | | {total / 1e3:.0f} | 100% |")
    return "\n".join(lines)


def profile_score(dtype: str, n: int, top: int) -> None:
    from proxysel.data import read_pool
    from proxysel.data.sharegpt_demo import demo_pool_path
    from proxysel.engine import score_losses
    from proxysel.models.loader import load_causal_lm
    from proxysel.models.render import Renderer
    from proxysel.store.scratch import scratch_dir

    lm = load_causal_lm("smollm2-135m", dtype=dtype)
    r = Renderer(lm.tokenizer, max_length=512)
    pool = read_pool(demo_pool_path(scratch_dir("proxysel-profile-"), n=n))
    enc = [e for e in (r.encode(x) for x in pool.examples) if not e.truncated]
    pad = lm.tokenizer.pad_token_id
    score_losses(lm.model, enc[:4], pad_id=pad)
    t = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        score_losses(lm.model, enc, pad_id=pad)
    wall = time.perf_counter() - t
    tokens = sum(e.n_tokens for e in enc)
    print(f"### score, {dtype}: {len(enc)} conversations, {tokens} tokens, {wall:.1f} s under the profiler\n")
    print(top_table(prof, top) + "\n", flush=True)


def profile_train(dtype: str, top: int) -> None:
    import train_throughput
    from proxysel.dynamics.train import TrainConfig, backward, make_optimizer, optimizer_step

    encoded, tok = train_throughput.demo_encoded(2 * train_throughput.EFFECTIVE, 256)
    model = train_throughput.fresh_model()
    config = TrainConfig(batch_size=train_throughput.MICRO, grad_accum=8, dtype=dtype)
    opt = make_optimizer(model, config)
    half = train_throughput.EFFECTIVE

    def step(batch):
        backward(model, encoded, batch, pad_id=tok.pad_token_id, config=config, device=torch.device("cpu"))
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
        optimizer_step(opt)

    step(list(range(half)))  # warm-up
    t = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step(list(range(half, 2 * half)))
    wall = time.perf_counter() - t
    tokens = sum(encoded[i].n_tokens for i in range(half, 2 * half))
    print(f"### train step, {dtype}: 32 conversations, {tokens} tokens, {wall:.1f} s under the profiler\n")
    print(top_table(prof, top) + "\n", flush=True)


def profile_trainer(dtype: str, top: int) -> None:
    from transformers import TrainerCallback

    import train_throughput

    encoded, tok = train_throughput.demo_encoded(2 * train_throughput.EFFECTIVE, 256)
    state: dict = {}

    class Profile(TrainerCallback):
        def on_step_begin(self, args, st, control, **kw):
            if st.global_step == 1:
                state["prof"] = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                state["prof"].__enter__()
                state["t"] = time.perf_counter()

        def on_step_end(self, args, st, control, **kw):
            if "prof" in state and "wall" not in state:
                state["prof"].__exit__(None, None, None)
                state["wall"] = time.perf_counter() - state["t"]

    train_throughput.run_trainer(encoded, tok, 2, False, dtype == "bfloat16", callbacks=[Profile()])
    print(f"### HF Trainer step, {dtype}: 32 conversations, {state['wall']:.1f} s under the profiler\n")
    print(top_table(state["prof"], top) + "\n", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--what", default="score-bf16,score-fp32,train-bf16,trainer-bf16")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtypes = {"bf16": "bfloat16", "fp32": "float32"}
    for what in args.what.split(","):
        kind, dt = what.split("-")
        if kind == "score":
            profile_score(dtypes[dt], args.n, args.top)
        elif kind == "train":
            profile_train(dtypes[dt], args.top)
        else:
            profile_trainer(dtypes[dt], args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
