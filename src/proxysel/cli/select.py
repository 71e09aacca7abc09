"""`proxysel select RUN --method M --budget B --seed S [--name N]`."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("select", help="select a budgeted subset from a run's scores; writes RUN/selections/NAME/")
    p.add_argument("run", help="the run directory")
    p.add_argument("--method", required=True,
                   help="random, top, lp, lp_app, s2l, density, ask_llm, ifd (see docs/methods.md)")
    p.add_argument("--budget", required=True, help="a fraction in (0, 1) or a count >= 1")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--name", default=None, help="selection name (default METHOD-BUDGET-sSEED)")
    p.add_argument("--clusters", type=int, default=None,
                   help="k-means clusters (lp/lp_app default 100 over the embeddings; s2l default 100 "
                        "over the trajectories)")
    p.add_argument("--signal", default=None, help="top/ifd: the score column to rank by")
    p.add_argument("--order", choices=["low", "high", "middle"], default=None, help="top: which end to keep")
    p.add_argument("--rounding", choices=["exact", "official"], default=None,
                   help="lp/lp_app: exact budget (default) or the official per-cluster ceil counts")
    p.add_argument("--within-clusters", action="store_true", default=None,
                   help="apply the ranking inside clusters (with --clusters K over the embeddings)")
    p.add_argument("--global", dest="within_clusters", action="store_false",
                   help="lp/lp_app: rank over the whole pool, no clusters")
    p.add_argument("--stratify", default=None, help="s2l: split the budget by this record field (e.g. source)")
    p.add_argument("--with-replacement", action="store_true", default=None, help="density: sample with replacement")
    p.add_argument("--include-truncated", action="store_true", default=None,
                   help="let fully truncated examples compete (default: left out)")
    p.add_argument("--data", default=None, help="where the input records are now (default: as recorded in the run)")
    p.add_argument("--overwrite", action="store_true", help="replace a selection of the same name")
    p.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    from proxysel import api

    params = {"clusters": args.clusters, "signal": args.signal, "order": args.order, "rounding": args.rounding,
              "within_clusters": args.within_clusters, "with_replacement": args.with_replacement,
              "include_truncated": args.include_truncated}
    out = api.select(args.run, method=args.method, budget=args.budget, seed=args.seed, name=args.name,
                     stratify=args.stratify, data=args.data, overwrite=args.overwrite, **params)
    import json

    meta = json.loads((out / "meta.json").read_text())
    print(f"selected {meta['n_selected']} of {meta['n_pool']} examples -> {out / meta['file']}")
    for note in meta.get("notes", []):
        print(f"note: {note}")
    return 0
