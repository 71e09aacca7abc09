"""Proxy training throughput: proxysel's loop against the Hugging Face Trainer, in one process.

    .venv/bin/python benchmarks/train_throughput.py [--steps 3] [--max-length 256]
        [--modes full-fp32,lora-bf16]
    .venv/bin/python benchmarks/train_throughput.py --lp-app 300     # lp_app wall time on the demo pool

Throughput: both train SmolLM2-135M-Instruct on the same ShareGPT conversations (the demo sample:
first user->assistant pair, proxysel.data.sharegpt_demo), rendered and masked the same way,
with the same recipe: AdamW (fused, the Trainer default), lr 2e-5 cosine with warmup 0.03,
effective batch 32 = 4 x 8 accumulation, clipping 1.0, per-token loss over the effective batch
(transformers >= 4.46 with num_items_in_batch). The difference is the loop:
- Trainer: random micro-batches padded to their longest member, full-vocabulary logits;
- proxysel.dynamics.train: micro-batches sorted by length inside the effective batch, lm_head
  only at the scored positions.
Modes: full fine-tuning or LoRA (r 16 on all linear layers), fp32 or bf16 autocast. Each run
does ``--steps`` optimizer steps on the same ``steps x 32`` examples; the first step is
warm-up and not timed. tokens/s = real (non-padding) input tokens / seconds.

--lp-app N: ``train_proxy(--epochs 1 --online --checkpoints 2)`` on the first N demo
conversations: one epoch plus passes at step 0 and at the end. That gives, from one run, the
cost of exact lp_app (epoch + 2 passes) and of --online (epoch + 1 pass) relative to the
epoch alone, and the Spearman correlation of online P_1 / lp_app with the exact ones.
Prints markdown for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time

import numpy as np
import torch

EFFECTIVE = 32
MICRO = 4
#: what the step timings read (see score_throughput.CLOCK)
CLOCK = time.perf_counter


def demo_encoded(n: int, max_length: int, model: str = "smollm2-135m", data: str | None = None):
    """The first ``n`` demo conversations (or records of the file ``data``) that keep a response
    at ``max_length`` tokens of ``model``, and the model's tokenizer."""
    from proxysel.data import read_pool
    from proxysel.data.sharegpt_demo import demo_pool_path
    from proxysel.models.loader import load_tokenizer, resolve_model_path
    from proxysel.models.render import Renderer
    from proxysel.store.scratch import scratch_dir

    if data is None:
        data = demo_pool_path(scratch_dir("proxysel-bench-"),
                              n=2 * n + 50)  # room for the truncated
    pool = read_pool(data)
    tokenizer = load_tokenizer(resolve_model_path(model)[0])
    renderer = Renderer(tokenizer, max_length=max_length)
    encoded = [e for e in (renderer.encode(x) for x in pool.examples) if not e.truncated]
    if len(encoded) < n:
        raise SystemExit(f"only {len(encoded)} conversations keep a response at this --max-length")
    return encoded[:n], tokenizer


def fresh_model(model: str = "smollm2-135m", device: str = "cpu"):
    from proxysel.models.loader import load_causal_lm

    out = load_causal_lm(model, device=device).model
    out.train()
    return out


class StepClock:
    """A progress object for dynamics.train that records when every update ends."""

    def __init__(self) -> None:
        self.times: list[float] = [CLOCK()]
        self.tokens: list[int] = []

    def update(self, n: int, tokens: int = 0, **_: object) -> None:
        self.times.append(CLOCK())
        self.tokens.append(tokens)


def run_proxysel(encoded, pad_id: int, steps: int, lora: bool, bf16: bool, model_name: str = "smollm2-135m",
                 device: str = "cpu") -> dict:
    from proxysel.dynamics.schedule import make_plan
    from proxysel.dynamics.train import TrainConfig, add_lora, train

    config = TrainConfig(epochs=1, checkpoints=0, batch_size=MICRO, grad_accum=EFFECTIVE // MICRO, lora=lora,
                         dtype="bfloat16" if bf16 else "float32")
    model = fresh_model(model_name, device)
    if lora:
        add_lora(model, config)
    data = encoded[:steps * EFFECTIVE]
    plan = make_plan([False] * len(data), epochs=1, effective_batch=EFFECTIVE, n_checkpoints=0,
                     warmup_ratio=config.warmup_ratio)
    # No scoring passes and no saved state: this measures the updates only.
    plan = dataclasses.replace(plan, pass_steps=(), save_steps=())
    clock = StepClock()
    with tempfile.TemporaryDirectory() as state:
        train(model, data, pad_id=pad_id, config=config, plan=plan, state_dir=state, evaluate=lambda s: None,
              progress=clock)
    _sync(device)
    dt = np.diff(clock.times)
    return {"seconds": float(dt[1:].sum()), "tokens": int(sum(clock.tokens[1:]))}


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def run_trainer(encoded, tokenizer, steps: int, lora: bool, bf16: bool, model_name: str = "smollm2-135m",
                device: str = "cpu", callbacks: list | None = None) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    model = fresh_model(model_name, device)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                 target_modules="all-linear", bias="none"))
    data = [{"input_ids": e.input_ids, "labels": e.labels} for e in encoded[:steps * EFFECTIVE]]
    pad = tokenizer.pad_token_id
    tokens: list[int] = []

    def collate(batch):
        t = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), t), pad, dtype=torch.long)
        labels = torch.full((len(batch), t), -100, dtype=torch.long)
        att = torch.zeros((len(batch), t), dtype=torch.long)
        for r, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[r, :n] = torch.tensor(b["input_ids"])
            labels[r, :n] = torch.tensor(b["labels"])
            att[r, :n] = 1
        tokens.append(int(att.sum()))
        return {"input_ids": ids, "attention_mask": att, "labels": labels}

    class Clock(TrainerCallback):
        times: list[float] = []

        def on_step_begin(self, args, state, control, **kw):
            if not self.times:
                self.times.append(CLOCK())

        def on_step_end(self, args, state, control, **kw):
            _sync(device)  # the Trainer keeps its loss on the device: wait for the step's kernels
            self.times.append(CLOCK())

    clock = Clock()
    clock.times = []
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=MICRO, gradient_accumulation_steps=EFFECTIVE // MICRO,
            learning_rate=2e-5, lr_scheduler_type="cosine", warmup_steps=0.03, num_train_epochs=1,
            max_grad_norm=1.0, weight_decay=0.0, bf16=bf16, use_cpu=device == "cpu", save_strategy="no",
            logging_strategy="no", report_to=[], dataloader_num_workers=0, remove_unused_columns=False,
            disable_tqdm=True, seed=42)
        Trainer(model=model, args=args, train_dataset=data, data_collator=collate,
                callbacks=[clock, *(callbacks or [])]).train()
    dt = np.diff(clock.times)
    # the collator runs for the micro-batches of a step just before that step
    per_step = [sum(tokens[k * (EFFECTIVE // MICRO):(k + 1) * (EFFECTIVE // MICRO)]) for k in range(steps)]
    return {"seconds": float(dt[1:].sum()), "tokens": int(sum(per_step[1:]))}


def throughput(args) -> None:
    encoded, tok = demo_encoded(args.steps * EFFECTIVE, args.max_length)
    lengths = [e.n_tokens for e in encoded]
    print("## Proxy training throughput vs HF Trainer\n")
    print(f"`.venv/bin/python {' '.join(sys.argv)}`"
          f" on {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; SmolLM2-135M-Instruct, {len(encoded)} ShareGPT demo "
          f"conversations (mean {np.mean(lengths):.0f} tokens, max {max(lengths)}), effective batch 32 "
          f"(4 x 8), {args.steps - 1} timed steps after 1 warm-up step, {args.clock} time.\n")
    print("| mode | proxysel tok/s | Trainer tok/s | ratio |")
    print("|---|---|---|---|")
    for mode in args.modes.split(","):
        lora, bf16 = mode.startswith("lora"), mode.endswith("bf16")
        ours = run_proxysel(encoded, tok.pad_token_id, args.steps, lora, bf16)
        theirs = run_trainer(encoded, tok, args.steps, lora, bf16)
        a, b = ours["tokens"] / ours["seconds"], theirs["tokens"] / theirs["seconds"]
        print(f"| {mode} | {a:.0f} | {b:.0f} | {a / b:.2f}x |", flush=True)
        print(json.dumps({"mode": mode, "proxysel": ours, "trainer": theirs}), file=sys.stderr, flush=True)


def lp_app_cost(args) -> None:
    from scipy.stats import spearmanr

    import proxysel
    from proxysel.data.sharegpt_demo import demo_pool_path
    from proxysel.store.scratch import scratch_dir

    tmp = scratch_dir("proxysel-lpapp-")
    data = demo_pool_path(tmp / "data", n=args.lp_app)
    t0 = time.perf_counter()
    run = proxysel.train_proxy(data, out=tmp / "run", epochs=1, online=True, checkpoints=2, dtype=args.dtype,
                               max_length=args.max_length)
    wall = time.perf_counter() - t0
    stage = json.loads((run / "manifest.json").read_text())["stages"]["train-proxy"]
    import pyarrow.parquet as pq

    t = pq.read_table(run / "scores.parquet")
    ok = ~np.array(t.column("truncated").to_pylist())
    ppl = np.array(t.column("ppl_epoch").to_pylist(), dtype=float)[ok]
    traj = np.array(t.column("trajectory").to_pylist(), dtype=float)[ok]
    p0, p1_online, p1_exact = ppl[:, 0], ppl[:, 1], np.exp(traj[:, -1])
    train_s, score_s = stage["seconds_train"], stage["seconds_scoring"]
    print(f"## lp_app wall time ({args.lp_app} demo conversations, SmolLM2-135M, {args.dtype}, "
          f"max length {args.max_length})\n")
    print(f"`.venv/bin/python benchmarks/train_throughput.py --lp-app {args.lp_app} --dtype {args.dtype}`: "
          f"{stage['plan']['total_steps']} optimizer steps, {ok.sum()} examples trained "
          f"({(~ok).sum()} truncated away).\n")
    print("| what | seconds | x one epoch |")
    print("|---|---|---|")
    print(f"| one training epoch alone | {train_s:.0f} | 1.00 |")
    print(f"| one scoring pass (mean of 2) | {score_s / 2:.0f} | {score_s / 2 / train_s:.2f} |")
    print(f"| exact lp_app: epoch + 2 passes | {train_s + score_s:.0f} "
          f"| {(train_s + score_s) / train_s:.2f} |")
    print(f"| --online lp_app: epoch + 1 pass | {train_s + score_s / 2:.0f} "
          f"| {(train_s + score_s / 2) / train_s:.2f} |")
    print(f"| this whole command (load, tokenize, write) | {wall:.0f} | {wall / train_s:.2f} |")
    rho_p = spearmanr(p1_online, p1_exact).statistic
    rho_lp = spearmanr((p0 - p1_online) / p0, (p0 - p1_exact) / p0).statistic
    print(f"\nOnline against exact (same run, same updates): Spearman P_1 {rho_p:.3f}, lp_app {rho_lp:.3f}; "
          f"median P_1 online {np.median(p1_online):.3f} vs exact {np.median(p1_exact):.3f} "
          f"(P_0 {np.median(p0):.3f}).")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per run (first one untimed)")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--modes", default="full-fp32,full-bf16,lora-fp32,lora-bf16")
    ap.add_argument("--lp-app", type=int, default=0, help="measure lp_app on this many demo conversations")
    ap.add_argument("--dtype", default="float32", help="--lp-app only")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall seconds, or CPU seconds of this process "
                         "(steadier on a shared machine with --threads 1)")
    args = ap.parse_args()
    global CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        CLOCK = time.process_time
    if args.lp_app:
        lp_app_cost(args)
    else:
        throughput(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
