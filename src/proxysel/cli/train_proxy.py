"""`proxysel train-proxy DATA --model M --epochs 3 --checkpoints 8 --out RUN`: ppl_epoch, trajectory, lp, lp_app."""

from __future__ import annotations

import argparse
import os

from proxysel.cli.common import add_data_options, add_model_options, add_run_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-proxy", help="fine-tune the proxy on the pool; record ppl_epoch, lp, lp_app, trajectory",
                       description="Fine-tune the proxy model on DATA (response tokens only) and store, per example, "
                                   "the perplexity after every epoch (ppl_epoch, lp, lp_app) and the loss at evenly "
                                   "spaced steps (trajectory) in RUN/scores.parquet. Rerun the same command to resume.")
    add_data_options(p)
    add_model_options(p)
    add_run_options(p)
    p.add_argument("--epochs", type=int, default=3, help="training epochs n; P_0..P_n are recorded (default 3)")
    p.add_argument("--checkpoints", type=int, default=None,
                   help="trajectory points: evenly spaced optimizer steps incl. step 0 and the last "
                        "(default 8; 0 with --online; 0 = no trajectory)")
    p.add_argument("--lp-epoch", type=int, default=1, help="the epoch i of the lp and lp_app columns (default 1)")
    p.add_argument("--lr", type=float, default=2e-5, help="peak learning rate, cosine schedule (default 2e-5)")
    p.add_argument("--batch-size", type=int, default=4, help="examples per micro-batch (default 4)")
    p.add_argument("--grad-accum", type=int, default=8,
                   help="micro-batches per optimizer step; effective batch = batch size x this (default 8: 32)")
    p.add_argument("--warmup-ratio", type=float, default=0.03, help="share of steps in linear warmup (default 0.03)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay on matrices (default 0)")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping, 0 = off (default 1.0)")
    p.add_argument("--seed", type=int, default=42, help="seeds the data order of every epoch (default 42)")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters on all linear layers (needs peft)")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank (default 16)")
    p.add_argument("--lora-alpha", type=int, default=32, help="LoRA alpha (default 32)")
    p.add_argument("--online", action="store_true",
                   help="take P_1..P_n from the training forward passes: one epoch + one pass for lp_app "
                        "(a cheap P_1 that ranks like the exact one, but its lp_app is biased by when an example "
                        "was seen; see benchmarks/RESULTS.md)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the weights of every scored step (safetensors) under RUN/stages/train-proxy/checkpoints")
    p.add_argument("--batch-tokens", type=int, default=8192,
                   help="padded tokens per batch of the scoring passes (default 8192)")
    p.add_argument("--shard-size", type=int, default=256, help="examples per resumable part of a pass (default 256)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from proxysel import api

    out = api.train_proxy(
        args.data, out=args.out, model=args.model, epochs=args.epochs, checkpoints=args.checkpoints,
        lp_epoch=args.lp_epoch, lr=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
        warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm,
        max_length=args.max_length, seed=args.seed, lora=args.lora, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
        online=args.online, keep_checkpoints=args.keep_checkpoints, dtype=args.dtype, template=args.template,
        batch_tokens=args.batch_tokens, limit=args.limit, on_bad_record=args.on_bad_record, format=args.format,
        max_record_bytes=args.max_record_bytes,
        columns=args.columns, dedupe=args.dedupe, shard_size=args.shard_size, overwrite=args.overwrite,
        trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle, device=args.device)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 wrote them
        print(f"scores: {out / 'scores.parquet'}")
    return 0
