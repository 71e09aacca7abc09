"""`proxysel verify RUN`: check every shard, marker and recorded file of a run; exit 2 if damaged."""

from __future__ import annotations

import argparse
import sys

from proxysel import api


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check every shard, marker, scores/embeddings file and selection of a "
                                      "run against its recorded sha256; exit code 2 when something is "
                                      "damaged",
                       description="Check the run folder without changing it (unless --repair). Prints each "
                                   "damaged file and what repairs it; exit code 0 for a clean run, 2 for a "
                                   "damaged one.")
    p.add_argument("run_dir", metavar="RUN", help="the run directory")
    p.add_argument("--repair", action="store_true",
                   help="first rebuild a damaged scores.parquet or embeddings.parquet from the stages (a "
                        "damaged shard is recomputed by rerunning the command that made it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = api.verify(args.run_dir, repair=args.repair)
    sys.stdout.write(report.format())
    return 0 if report.clean else 2
