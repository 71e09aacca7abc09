"""`proxysel train-proxy DATA --model M --epochs 3 --checkpoints 8 --out RUN`: ppl_epoch, trajectory, lp,
lp_app. Options generated from TrainProxyConfig, ReadConfig and RuntimeConfig."""

from __future__ import annotations

import argparse
import os

from proxysel import api
from proxysel.cli.common import add_data_options, add_run_options
from proxysel.options import ReadConfig, RuntimeConfig, TrainProxyConfig, add_arguments, fields_of, from_args
from proxysel.store import RunFolder

#: train-proxy runs in this process or under torchrun/accelerate, not on a Ray cluster
NOT_HERE = ("backend", "ray_address", "ray_actors", "ray_cpus_per_actor")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-proxy",
                       help="fine-tune the proxy on the pool; record ppl_epoch, lp, lp_app, trajectory",
                       description="Fine-tune the proxy model on DATA (response tokens only) and store, per "
                                   "example, the perplexity after every epoch (ppl_epoch, lp, lp_app) and "
                                   "the loss at evenly spaced steps (trajectory) in RUN/scores.parquet. "
                                   "Rerun the same command to resume.")
    add_data_options(p)
    add_arguments(p, TrainProxyConfig)
    add_run_options(p)
    add_arguments(p.add_argument_group("where it runs (docs/scale.md)"), RuntimeConfig, skip=NOT_HERE)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    runtime = {k: v for k, v in fields_of(from_args(RuntimeConfig, args)).items() if k not in NOT_HERE}
    out = api.train_proxy(args.data, out=args.out, config=from_args(TrainProxyConfig, args),
                          overwrite=args.overwrite, **fields_of(from_args(ReadConfig, args)), **runtime)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 wrote them
        print(f"scores: {RunFolder(out).scores_path}")
    return 0
