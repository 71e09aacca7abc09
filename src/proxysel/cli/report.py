"""`proxysel report RUN`: write RUN/report.html."""

from __future__ import annotations

import argparse

from proxysel import api
from proxysel.options import ReportConfig, add_arguments, from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write RUN/report.html, one self-contained page about the run")
    p.add_argument("run_dir", metavar="RUN", help="the run directory")
    add_arguments(p, ReportConfig)
    p.add_argument("--data", default=None,
                   help="read the input records from here (default: the data path in the manifest)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = from_args(ReportConfig, args)
    path = api.report(args.run_dir, selection=cfg.selection, data=args.data, read_data=cfg.read_data)
    print(f"report: {path}")
    return 0
