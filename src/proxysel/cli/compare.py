"""`proxysel compare RUN_A RUN_B --signal S`: does a small proxy rank examples like a bigger one?"""

from __future__ import annotations

import argparse

from proxysel import api
from proxysel.stages.compare import format_compare


def add_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("compare", help="does a small proxy rank like a bigger one? correlation and overlap")
    c.add_argument("run_a")
    c.add_argument("run_b")
    c.add_argument("--signal", default="loss", help="score column to compare (default loss)")
    c.add_argument("--signal-b", default=None, help="column of RUN_B if it differs")
    c.add_argument("--order", choices=["low", "high"], default="low",
                   help="which end is selected when computing the overlaps (default low)")
    c.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    print(format_compare(api.compare(args.run_a, args.run_b, signal=args.signal, signal_b=args.signal_b,
                                     order=args.order)))
    return 0
