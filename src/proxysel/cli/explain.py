"""`proxysel explain RUN ID`: the signals of one example and why it was kept or dropped."""

from __future__ import annotations

import argparse
import sys

from proxysel import api


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="print the signals, rank, cluster and keep/drop reason of one example")
    p.add_argument("run_dir", metavar="RUN", help="the run directory")
    p.add_argument("example_id", metavar="ID", help="the example id (as in scores.parquet)")
    p.add_argument("--selection", default=None, metavar="NAME", help="only this selection (default: all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(api.explain(args.run_dir, args.example_id, selection=args.selection))
    return 0
