"""`proxysel score DATA --signals loss --model M --out RUN`: options generated from ScoreConfig,
ReadConfig and RuntimeConfig."""

from __future__ import annotations

import argparse

from proxysel import api
from proxysel.cli.common import add_data_options, add_reference_option, add_run_options
from proxysel.options import ReadConfig, RuntimeConfig, add_arguments, fields_of, from_args
from proxysel.signals.config import ScoreConfig
from proxysel.store import RunFolder


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score every example with a proxy model into RUN/scores.parquet")
    add_data_options(p)
    add_arguments(p, ScoreConfig)
    add_reference_option(p)
    add_run_options(p)
    add_arguments(p.add_argument_group("where it runs (docs/scale.md)"), RuntimeConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = api.score(args.data, out=args.out, config=from_args(ScoreConfig, args), reference=args.reference,
                    overwrite=args.overwrite, **fields_of(from_args(ReadConfig, args)),
                    **fields_of(from_args(RuntimeConfig, args)))
    folder = RunFolder(out)
    if folder.scores_path.exists():
        print(f"scores: {folder.scores_path}")
    for name in folder.vector_sets():  # embedding, rds and their reference sets: files of their own
        print(f"vectors: {folder.vectors_path(name)}")
    return 0
