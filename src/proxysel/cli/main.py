"""`proxysel` entry point: one thin module per command, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from proxysel import __version__, logs
from proxysel.cli import bench, compare, demo, env, explain, report, run, score, select, train_proxy, verify
from proxysel.errors import ProxyselError

#: command name -> its module under proxysel.cli (``add_parser`` and the function it sets)
COMMANDS = {
    "score": score,
    "train-proxy": train_proxy,
    "select": select,
    "compare": compare,
    "env": env,
    "demo": demo,
    "report": report,
    "explain": explain,
    "run": run,
    "bench": bench,
    "verify": verify,
}


def _add_verbosity(p: argparse.ArgumentParser, default: object) -> None:
    p.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="no progress bars and no info messages on the terminal, only warnings and errors "
                        "(RUN/logs/ still gets everything)")
    p.add_argument("-v", "--verbose", action="store_true", default=default, help="debug messages")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proxysel", description="Select LLM training data with a small proxy model.")
    parser.add_argument("--version", action="version", version=f"proxysel {__version__}")
    _add_verbosity(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    # -q/-v also after the command (`proxysel demo -q`); SUPPRESS keeps a global -q from being reset.
    for p in sub.choices.values():
        _add_verbosity(p, argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # argparse exits with code 2 on usage errors. Dotted FIELD=VALUE overrides may follow options
    # (`bench cfg.yaml --out D seeds=[0]`): argparse fills a positional list only once, so the
    # words it leaves over join the command's `overrides`.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.quiet and args.verbose:
        parser.error("--quiet and --verbose exclude each other")
    logs.configure(quiet=args.quiet, verbose=args.verbose)
    log = logging.getLogger("proxysel.cli")
    with logs.session(args.command, argv, verbose=args.verbose):
        try:
            code = int(args.func(args) or 0)
            # the log files always get it; the terminal only with --verbose
            log.info("%s: done (exit code %d)", args.command, code, extra={logs.FILE_ONLY: not args.verbose})
            return code
        except ProxyselError as e:
            logs.log_error(log, f"{args.command}: {e} (exit code {e.exit_code})")
            print(f"proxysel: error: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:
            logs.log_error(log, f"{args.command}: interrupted")
            print("proxysel: interrupted; rerun the same command to resume", file=sys.stderr)
            return 130
        except Exception:
            logs.log_error(log, f"{args.command}: unexpected error", exc_info=True)
            raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
