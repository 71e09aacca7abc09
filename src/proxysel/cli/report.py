"""`proxysel report RUN`: write RUN/report.html."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write RUN/report.html, one self-contained page about the run")
    p.add_argument("run_dir", metavar="RUN", help="the run directory")
    p.add_argument("--selection", default=None, metavar="NAME",
                   help="the selection to colour the page by (default: the most recent)")
    p.add_argument("--data", default=None,
                   help="read the input records from here (default: the data path in the manifest)")
    p.add_argument("--no-data", action="store_true",
                   help="do not read the input records (no source/format keep rates, no text previews)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from proxysel import api

    path = api.report(args.run_dir, selection=args.selection, data=args.data, read_data=not args.no_data)
    print(f"report: {path}")
    return 0
