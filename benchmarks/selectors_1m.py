"""Selectors at scale: time and peak memory of each selector on 1,000,000 synthetic examples.

    .venv/bin/python benchmarks/selectors_1m.py                 # all cases, 1M rows, prints a table
    .venv/bin/python benchmarks/selectors_1m.py --cases lp,s2l --n 200000
    .venv/bin/python benchmarks/selectors_1m.py --write-results  # also appends to benchmarks/RESULTS.md
    .venv/bin/python benchmarks/selectors_1m.py --density-accuracy [--embeddings emb.npy]

Each case runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its own: it
includes the synthetic inputs the case needs (1M x 384 float32 embeddings are 1.5 GB) and the
Python interpreter. "select s" is the selector call only, with k-means or the density sketch
included where the method needs them; "data s" is the time to make the synthetic inputs.
Budget: 10% of the pool. Limits checked: < 60 s and < 4 GB per case.

``--density-accuracy`` measures the density sketch against the exact kernel sum and against a
R=4096 run, for several R (the trade-off behind the defaults in ``proxysel.signals.density``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CASES = ("random", "top", "lp", "s2l", "density", "rds")
LIMIT_S = 60.0
LIMIT_GB = 4.0
DIM = 384
TRAJ_LEN = 8
RDS_REFERENCE = 1000


def synthetic_embeddings(n: int, d: int = DIM, n_topics: int = 2000, seed: int = 0) -> np.ndarray:
    """Unit-norm float32 (n, d): topics of Zipf-like sizes plus noise, written block by block so
    the peak stays at the size of the result."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((n_topics, d)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, n_topics + 1)
    weights /= weights.sum()
    out = np.empty((n, d), dtype=np.float32)
    step = 65536
    for start in range(0, n, step):
        m = min(step, n - start)
        block = topics[rng.choice(n_topics, size=m, p=weights)]
        block += rng.standard_normal((m, d), dtype=np.float32) * np.float32(1.2 / np.sqrt(d))
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + m] = block
    return out


def synthetic_trajectories(n: int, length: int = TRAJ_LEN, seed: int = 1) -> np.ndarray:
    """float64 (n, length): decreasing losses with per-example speed and floor."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(1.5, 4.0, (n, 1))
    floor = start * rng.uniform(0.1, 0.9, (n, 1))
    speed = rng.uniform(0.05, 1.5, (n, 1))
    t = np.arange(length)[None, :]
    return floor + (start - floor) * np.exp(-speed * t) + 0.02 * rng.standard_normal((n, length))


def run_case(case: str, n: int) -> dict:
    """Build the inputs of one case, time its selection, return the measurements."""
    from proxysel.selectors import ScoreTable, get_selector
    from proxysel.signals.density import lsh_density

    t0 = time.perf_counter()
    rng = np.random.default_rng(42)
    ids = [f"ex{i:07d}" for i in range(n)]
    columns: dict[str, np.ndarray] = {}
    if case == "top":
        columns["ppl"] = rng.lognormal(1.5, 0.6, n)
    elif case == "lp":
        columns["lp"] = rng.normal(0.8, 0.25, n)
        columns["embedding"] = synthetic_embeddings(n)
    elif case == "s2l":
        columns["trajectory"] = synthetic_trajectories(n)
    elif case == "density":
        columns["embedding"] = synthetic_embeddings(n)
    reference = None
    if case == "rds":
        columns["rds"] = synthetic_embeddings(n)
        # The reference set: 1,000 examples of the same kind of data, in 10 groups (tasks).
        reference = ScoreTable(ids=[f"ref{i:04d}" for i in range(RDS_REFERENCE)],
                               columns={"rds": synthetic_embeddings(RDS_REFERENCE, seed=7),
                                        "group": np.array([f"task{i % 10}" for i in range(RDS_REFERENCE)],
                                                          dtype=object)})
    table = ScoreTable(ids=ids, columns=columns, reference=reference)
    data_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    if case == "random":
        sel = get_selector("random")().select(table, 0.1, seed=0)
    elif case == "top":
        sel = get_selector("top")(signal="ppl", order="middle").select(table, 0.1, seed=0)
    elif case == "lp":
        sel = get_selector("lp")(clusters=1000).select(table, 0.1, seed=0)
    elif case == "s2l":
        sel = get_selector("s2l")(clusters=100).select(table, 0.1, seed=0)
    elif case == "density":
        table.columns["density"] = lsh_density(table.columns["embedding"], seed=0)
        sel = get_selector("density")().select(table, 0.1, seed=0)
    elif case == "rds":
        sel = get_selector("rds")().select(table, 0.1, seed=0)
    else:
        raise ValueError(f"unknown case {case!r}")
    select_s = time.perf_counter() - t0
    assert sel.n_selected == round(0.1 * n), sel.n_selected
    return {"case": case, "n": n, "data_s": round(data_s, 2), "select_s": round(select_s, 2),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3),
            "n_selected": sel.n_selected,
            "n_clusters": int(len(np.unique(sel.cluster[sel.cluster >= 0])))}


DESCRIPTIONS = {
    "random": "uniform, no signal",
    "top": "ppl, middle band",
    "lp": "k-means k=1000 on 384-d embeddings + clustered lowest-LP",
    "s2l": "k-means k=100 on length-8 trajectories + S2L sampling",
    "density": "LSH sketch (R=256) on 384-d embeddings + Gumbel top-k",
    "rds": "cosine to 1,000 reference embeddings (10 groups), max per group + round-robin",
}


def table_markdown(results: list[dict]) -> str:
    lines = ["| selector | what is timed | select s | data s | peak RSS GiB | within limits |",
             "|---|---|---|---|---|---|"]
    for r in results:
        ok = r["select_s"] < LIMIT_S and r["peak_rss_gb"] < LIMIT_GB
        lines.append(f"| {r['case']} | {DESCRIPTIONS[r['case']]} | {r['select_s']:.1f} | "
                     f"{r['data_s']:.1f} | {r['peak_rss_gb']:.2f} | {'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def machine() -> str:
    import numpy

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
            f"Python {platform.python_version()}, numpy {numpy.__version__}")


def main_benchmark(args: argparse.Namespace) -> int:
    results = []
    for case in args.cases.split(","):
        proc = subprocess.run([sys.executable, __file__, "--run-case", case, "--n", str(args.n)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 1
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(result), flush=True)
        results.append(result)
    md = table_markdown(results)
    print(md)
    if args.write_results:
        command = f".venv/bin/python benchmarks/selectors_1m.py --n {args.n} --cases {args.cases}"
        section = (f"\n## Selectors at 1M\n\nCommand: `{command}`\n\nMachine: {machine()}.\n"
                   f"n = {args.n:,} examples, budget 10%, one subprocess per case.\n\n{md}\n")
        path = Path(__file__).with_name("RESULTS.md")
        with path.open("a", encoding="utf-8") as f:
            if path.stat().st_size == 0:
                f.write("# Benchmark results\n")
            f.write(section)
        print(f"appended to {path}")
    bad = [r["case"] for r in results if r["select_s"] >= LIMIT_S or r["peak_rss_gb"] >= LIMIT_GB]
    if bad:
        print(f"over the limits ({LIMIT_S:.0f} s, {LIMIT_GB:.0f} GB): {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------ density accuracy


def pstable_kernel(c: np.ndarray, r: float) -> np.ndarray:
    """Collision probability of one p-stable hash at distance c (Datar et al. 2004)."""
    from scipy.stats import norm

    c = np.maximum(c, 1e-12)
    u = r / c
    k = 1 - 2 * norm.cdf(-u) - 2 / (np.sqrt(2 * np.pi) * u) * (1 - np.exp(-u * u / 2))
    return np.where(c <= 1e-6, 1.0, k)


def density_accuracy(args: argparse.Namespace) -> int:
    from scipy.stats import spearmanr

    from proxysel.signals.density import DEFAULT_WIDTH, lsh_density

    x = np.load(args.embeddings).astype(np.float32) if args.embeddings else synthetic_embeddings(8000)
    n = len(x)
    r = DEFAULT_WIDTH
    exact = np.empty(n)
    for s in range(0, n, 1024):
        q = x[s:s + 1024]
        d2 = np.maximum((q * q).sum(1)[:, None] - 2 * q @ x.T + (x * x).sum(1)[None, :], 0)
        exact[s:s + 1024] = pstable_kernel(np.sqrt(d2), r).mean(axis=1)
    ref = lsh_density(x, R=4096, r=r, seed=99)
    print(f"n={n}, d={x.shape[1]}, r={r}; exact kernel sum p99/p1 = "
          f"{np.percentile(exact, 99) / np.percentile(exact, 1):.3f}; "
          f"R=4096 vs exact: Spearman {spearmanr(ref, exact).statistic:.3f}")
    print("| R | Spearman vs exact | Spearman vs R=4096 | median relative error vs exact |")
    print("|---|---|---|---|")
    for R in (32, 64, 128, 256, 512, 1024):
        est = lsh_density(x, R=R, r=r, seed=0)
        print(f"| {R} | {spearmanr(est, exact).statistic:.3f} | {spearmanr(est, ref).statistic:.3f} | "
              f"{np.median(np.abs(est / exact - 1)):.4f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="examples in the synthetic pool")
    parser.add_argument("--cases", default=",".join(CASES),
                        help="comma-separated subset of " + ",".join(CASES))
    parser.add_argument("--write-results", action="store_true",
                        help="append a section to benchmarks/RESULTS.md")
    parser.add_argument("--run-case", help=argparse.SUPPRESS)
    parser.add_argument("--density-accuracy", action="store_true",
                        help="measure the density sketch's accuracy against the exact kernel sum")
    parser.add_argument("--embeddings", help="a .npy of unit-norm embeddings for --density-accuracy")
    args = parser.parse_args(argv)
    if args.run_case:
        print(json.dumps(run_case(args.run_case, args.n)))
        return 0
    if args.density_accuracy:
        return density_accuracy(args)
    return main_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
