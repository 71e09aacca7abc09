"""`proxysel bench [CONFIG.yaml] [--preset NAME] [--out DIR] [--match steps] [FIELD=VALUE ...]`."""

from __future__ import annotations

import argparse

from proxysel import api
from proxysel.benchmarking.config import MATCH
from proxysel.benchmarking.presets import PRESETS
from proxysel.cli.common import add_overrides
from proxysel.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="train a target on every selection and compare it with the baselines (tables + plot)",
        description="For every selector x budget x seed, select from the proxy's signals, train the target "
                    "with one fixed recipe, evaluate it on the eval set (per group, pooled and macro); full "
                    "data and the baselines random, longest and cluster_random are always trained, and every "
                    "selection gets a paired verdict against random and full data and a compute ledger. "
                    "Writes results.md, results.csv, stats.json, ledger.json, keep_rates.csv and plot.png "
                    "into --out. Rerun the same command to resume: finished cells are read from OUT/cells/. "
                    "Presets: tiny (seconds), synthetic (~30 min), cpu (~80 min), cpu-targeted, gpu. See "
                    "docs/bench.md.")
    p.add_argument("config", nargs="?", metavar="CONFIG.yaml",
                   help="a bench config (merged over --preset's sections when both are given)")
    add_overrides(p, "target.epochs=5 seeds=[0] budgets=[0.1,0.3]",
                  "recompute cells and proxy stages whose settings changed (default: refuse)")
    p.add_argument("--preset", choices=list(PRESETS), help="a built-in config")
    p.add_argument("--out", help="the bench folder (default: the config's out, or runs/bench-<preset>)")
    p.add_argument("--match", choices=list(MATCH),
                   help="epochs (default): every subset gets target.epochs; steps: as many optimizer steps "
                        "as the full-data run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not config.endswith((".yaml", ".yml")):
        config, overrides = None, [config, *overrides]  # `proxysel bench --preset tiny seeds=[0]`
    if config is None and args.preset is None:
        raise UsageError(f"give a CONFIG.yaml or --preset NAME ({', '.join(PRESETS)})")
    out = api.bench(config if config is not None else args.preset, out=args.out, dotted=overrides,
                    match=args.match, overwrite=args.overwrite,
                    preset=args.preset if config is not None else None,
                    echo=lambda msg: print(msg, flush=True))
    print((out / "results.md").read_text(encoding="utf-8"))
    return 0
