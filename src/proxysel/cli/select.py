"""`proxysel select RUN --method M --budget B --seed S [--name N] [--from PARENT]`: options generated
from SelectConfig and every registered selector's parameters."""

from __future__ import annotations

import argparse

from proxysel import api
from proxysel.cli.common import add_reference_option, add_selector_options, selector_params
from proxysel.options import add_arguments, fields_of, from_args
from proxysel.selectors.config import SelectConfig
from proxysel.store import RunFolder


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("select",
                       help="select a budgeted subset from a run's scores; writes RUN/selections/NAME/")
    p.add_argument("run", help="the run directory")
    add_arguments(p, SelectConfig)
    add_reference_option(p)
    p.add_argument("--data", default=None,
                   help="where the input records are now (default: as recorded in the run)")
    p.add_argument("--overwrite", action="store_true", help="replace a selection of the same name")
    add_selector_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    given = {k: v for k, v in vars(args).items() if k in {"method", "budget", "seed", "name", "parent"}}
    config = from_args(SelectConfig, argparse.Namespace(**given, options=selector_params(args)))
    out = api.select(args.run, config=config, data=args.data, reference=args.reference,
                     overwrite=args.overwrite)
    name = fields_of(config)["name"]
    meta, _ = RunFolder(args.run).read_selection_meta(name)
    print(f"selected {meta['n_selected']} of {meta['n_pool']} examples -> {out / meta['file']}")
    for note in meta.get("notes", []):
        print(f"note: {note}")
    return 0
