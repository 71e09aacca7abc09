"""What several commands share: the DATA argument, --out/--overwrite, dotted overrides, and the
selector options (generated from the selector registry)."""

from __future__ import annotations

import argparse
from typing import Any

from proxysel.options import ReadConfig, add_arguments, as_text, flag_of, kind_of
from proxysel.selectors import available_selectors, param_fields

DATA_HELP = "a .jsonl, .jsonl.gz, .json, .parquet file, a folder of them, or a HF datasets folder"


def add_data_options(p: argparse.ArgumentParser) -> None:
    """The positional DATA and the read options (``ReadConfig``)."""
    p.add_argument("data", help=DATA_HELP)
    add_arguments(p, ReadConfig)


def add_reference_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", default=None, metavar="FILE",
                   help="the reference set: examples of what the model should be good at, read like DATA "
                        "(reference-aware signals and selectors read it; see docs/methods.md)")


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="the run directory")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute stages whose data, model or parameters changed (default: refuse)")


def add_overrides(p: argparse.ArgumentParser, examples: str, overwrite_help: str) -> None:
    """The trailing ``FIELD=VALUE`` overrides of a config command (``run``, ``bench``) and ``--overwrite``.

    Overrides may also follow options: cli.main hands the words argparse leaves over to ``overrides``.
    """
    p.add_argument("overrides", nargs="*", metavar="FIELD=VALUE",
                   help=f"dotted overrides, typed by their field: {examples}")
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)


def add_selector_options(p: argparse.ArgumentParser) -> None:
    """One option per parameter any registered selector declares, unset by default (the chosen
    selector's own default applies); the help names the selectors that take it unless all do."""
    g = p.add_argument_group("selector parameters (defaults per selector: docs/methods.md)")
    every = set(available_selectors())
    for name, info in param_fields().items():
        who = "" if set(info.owners) >= every else f"[{', '.join(info.owners)}] "
        help_text = who + info.field.metadata["help"]
        choices = info.field.metadata.get("choices")
        if choices and not callable(choices):
            help_text += f" (one of {', '.join(map(str, choices))})"
        flag, negative, dest = flag_of(info.field), info.field.metadata.get("negative"), f"param.{name}"
        if kind_of(info.hint) == "bool":
            g.add_argument(flag, dest=dest, action="store_true", default=None, help=help_text)
            if negative:
                g.add_argument(negative, dest=dest, action="store_false", default=None,
                               help=f"sets {name} to false")
            continue
        g.add_argument(flag, dest=dest, default=None,
                       metavar=info.field.metadata.get("metavar") or name.upper(), help=help_text)


def selector_params(args: argparse.Namespace) -> dict[str, Any]:
    """The selector parameters given on the command line (text, typed by the selector's ``Params``)."""
    return {k[len("param."):]: as_text(v) for k, v in vars(args).items()
            if k.startswith("param.") and v is not None}
