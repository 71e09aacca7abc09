"""`proxysel` entry point: one thin module per command, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from proxysel import __version__
from proxysel.errors import ProxyselError

#: command name -> module under proxysel.cli
COMMANDS = {
    "score": "score",
    "train-proxy": "train_proxy",
    "select": "select",
    "compare": "compare",
    "env": "env",
    "demo": "demo",
    "report": "report",
    "explain": "explain",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proxysel", description="Select LLM training data with a small proxy model.")
    parser.add_argument("--version", action="version", version=f"proxysel {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        importlib.import_module(f"proxysel.cli.{module}").add_parser(sub)
    return parser


class _ExitCode2Parser(argparse.ArgumentParser):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse exits with code 2 on usage errors
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.quiet:
        import os

        os.environ["PROXYSEL_QUIET"] = "1"
    for noisy in ("transformers", "sentence_transformers", "huggingface_hub", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return int(args.func(args) or 0)
    except ProxyselError as e:
        print(f"proxysel: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("proxysel: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
