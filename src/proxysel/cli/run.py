"""`proxysel run CONFIG.yaml [dotted.field=value ...]`: the whole pipeline from one config file."""

from __future__ import annotations

import argparse

from proxysel import api
from proxysel.cli.common import add_overrides
from proxysel.pipeline import describe


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run the whole pipeline (proxy, signals, selections, report) from one YAML config",
        description="Run the pipeline a YAML config describes: train-proxy and/or score, every selection, "
                    "then the report, into the config's `out` folder (default runs/<config name>). Rerun the "
                    "same command to resume; after a change only the changed step and the steps after it "
                    "run again. The resolved config is saved as RUN/config.yaml. Examples: configs/*.yaml; "
                    "every field: docs/cli.md.")
    p.add_argument("config", metavar="CONFIG.yaml", help="the config file")
    add_overrides(p, "select.budget=0.2 train_proxy.model=gemma3-270m score.signals=loss,embedding "
                     "select.1.seed=3 out=runs/x",
                  "also replace stages that other commands left in the folder with other parameters")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = api.run(args.config, args.overrides, overwrite=args.overwrite)
    print(describe(out))
    return 0
