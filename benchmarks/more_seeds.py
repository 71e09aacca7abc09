"""Train a finished bench's subsets on more target seeds, without retraining full data.

`proxysel bench` trains full data for every seed it is given, which on the `cpu-targeted` preset is
the costliest cell by far. To check a close result on fresh seeds, this reads a bench folder's
resolved config, data and proxy selections, and trains the target with the bench's own cell code
(``runner.run_cell``: the same recipe, metrics, per-example arrays and cache) on the subsets of
some of its cells, with other seeds. The cells go to ``--out/cells``, beside a copy of the eval set,
so that ``pooled_seeds.py`` pairs them with the bench's own cells:

    python benchmarks/more_seeds.py runs/bench-cpu-targeted --cells longest-0.3-s0 longest50-rds-0.3-s0 \
        --seeds 3 4 5 --out runs/bench-cpu-targeted-more
    python benchmarks/pooled_seeds.py runs/bench-cpu-targeted runs/bench-cpu-targeted-more \
        --metric eval_loss --budgets 0.3 --selectors longest50-rds --baselines longest

Each named cell's subset is reused as it is, so this is only right for selectors that draw nothing
at random (longest, top, rds and chains of them): a new seed then varies only the target's
initialisation and data order. The script checks that from the bench itself: the cell's selector
must have kept the same subset for every seed the bench selected it for (two or more), otherwise
(random, s2l, lp_app's k-means) it refuses.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path, help="a finished bench folder")
    ap.add_argument("--cells", nargs="+", required=True, help="cell names whose subsets to train again")
    ap.add_argument("--seeds", nargs="+", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True, help="folder for the new cells")
    args = ap.parse_args(argv)

    from proxysel.benchmarking.config import load_bench_config
    from proxysel.benchmarking.groups import GROUP_RULES
    from proxysel.benchmarking.runner import Cell, load_data, pool_labels, prepare_models, run_cell
    from proxysel.store import RunFolder

    cfg = load_bench_config(args.bench / "config.yaml")
    choices = {c.name: c for c in cfg.choices()}
    data = load_data(cfg, args.bench)
    _, target_spec = prepare_models(cfg, args.bench, data.pool)
    proxy = RunFolder(args.bench / "proxy")
    by_id = {e.id: e for e in data.pool.examples}
    labels = pool_labels(data.pool, [r for r in (cfg.data.group_by, cfg.data.category) if r in GROUP_RULES])
    (args.out / "data").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.bench / "data" / "eval.jsonl", args.out / "data" / "eval.jsonl")

    todo = []
    for name in args.cells:
        selector, budget, _ = name.rsplit("-", 2)
        if selector not in choices:
            raise SystemExit(f"{name}: {selector!r} is not a selector of {args.bench}")
        # a subset that differs between the bench's own seeds is drawn per seed: it cannot be reused
        ids = proxy.selection_ids(name)
        # the seeds the bench selected this cell for (its config.yaml holds only its last run's seeds)
        ran = [n for n in proxy.selections() if n.rsplit("-", 1)[0] == f"{selector}-{budget}"]
        if len(ran) < 2:
            raise SystemExit(f"{name}: the bench selected it for one seed only; whether its subset "
                             "depends on the seed cannot be told")
        if any(sorted(proxy.selection_ids(n)) != sorted(ids) for n in ran):
            raise SystemExit(f"{name}: {selector} draws per seed (its subsets differ between "
                             f"{', '.join(ran)}); it cannot be reused for another seed")
        todo += [(Cell(selector, float(budget), seed), ids) for seed in args.seeds]
    todo.sort(key=lambda t: t[0].seed)  # seed by seed, so that a stopped run leaves whole pairs
    if cfg.threads is not None:  # as the bench ran its cells
        import torch

        torch.set_num_threads(cfg.threads)
    for k, (cell, ids) in enumerate(todo, 1):
        run_cell(cfg, args.out, cell, target_spec, data, ids, by_id, labels, overwrite=False,
                 prefix=f"[{k}/{len(todo)}]", say=lambda msg: print(msg, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
