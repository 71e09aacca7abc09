"""A synthetic run folder for the report and explain tests, built with the store API.

Everything a full run holds, without a model: input records (two layouts, three sources, an
untrusted ``<script>`` in some texts and in one id), a manifest with stages, timings and skipped
records, scores.parquet with every column, embeddings, and two selections made by the real
selectors (``ppl-low``: the global perplexity cut, written first; ``lp-30``: clustered LP, the
newest). Seconds to build for a few hundred rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

SCRIPT = '<script>alert("pwned")</script>'
EVIL_ID = 'x"><img src=x onerror=alert(1)>'


@dataclass
class SyntheticRun:
    run: Path
    data: Path
    ids: list[str]
    selections: tuple[str, ...]


def write_pool(path: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` records: alpaca and messages layouts, sources alpaca/dolly/oasst, ids ex00000...
    (row 1 has EVIL_ID); every 7th record carries SCRIPT in its text."""
    rng = np.random.default_rng(seed)
    words = "alpha beta gamma delta the quick brown fox jumps over lazy dog two plus four".split()
    sources = ["alpaca", "dolly", "oasst"]
    lines, ids = [], []
    for i in range(n):
        q = " ".join(rng.choice(words, size=int(rng.integers(3, 14))))
        a = " ".join(rng.choice(words, size=int(rng.integers(2, 30))))
        if i % 7 == 0:
            q = f"{q} {SCRIPT} & <b>bold</b>"
        ex_id = EVIL_ID if i == 1 else f"ex{i:05d}"
        src = sources[int(rng.integers(0, 3)) if i % 5 else 0]
        if i % 4 == 3:
            rec = {"id": ex_id, "source": src, "messages": [{"role": "user", "content": q},
                                                             {"role": "assistant", "content": a}]}
        else:
            rec = {"id": ex_id, "source": src, "instruction": q, "output": a}
        lines.append(json.dumps(rec))
        ids.append(ex_id)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ids


def scores_table(ids: list[str], seed: int = 0, clusters: int = 8, checkpoints: int = 6,
                 epochs: int = 3) -> pa.Table:
    """Every scores.parquet column, with plausible values; every 23rd row is truncated (NaN).
    ``epochs`` (1 to 3) of proxy training: ppl_epoch holds P_0..P_epochs, and LP(1) is over them."""
    n = len(ids)
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, clusters, size=n)
    n_tokens = rng.integers(20, 1500, size=n)
    n_resp = np.maximum(1, (n_tokens * rng.uniform(0.2, 0.8, size=n)).astype(np.int64))
    truncated = np.arange(n) % 23 == 5
    loss = rng.normal(2.0 + 0.1 * cluster, 0.4, size=n).clip(0.2)
    drop = np.array([1.0, 0.7, 0.6, 0.55])[: epochs + 1]
    p = np.exp(loss)[:, None] * drop[None, :] ** rng.uniform(0.3, 1.5, size=(n, 1))
    lp = (p[:, 0] - p[:, 1]) / (p[:, 0] - p[:, -1])
    lp[1] = lp.min() - 0.01  # the row with the untrusted id is kept, rank 1: it shows in the report
    lp_app = (p[:, 0] - p[:, 1]) / p[:, 0]
    steps = np.linspace(0, 1, checkpoints)
    speed = rng.uniform(0.5, 3.0, size=n) * (1 + cluster / clusters)
    traj = loss[:, None] * (0.55 + 0.45 * np.exp(-speed[:, None] * steps[None, :] * 3))
    traj += rng.normal(0, 0.03, size=traj.shape)
    ifd = rng.lognormal(-0.2, 0.25, size=n)
    nan = np.where(truncated, np.nan, 1.0)
    cols = {
        "id": pa.array(ids, pa.string()),
        "n_tokens": pa.array(n_tokens, pa.int64()),
        "n_response_tokens": pa.array(n_resp, pa.int64()),
        "truncated": pa.array(truncated),
        "loss": pa.array(loss * nan),
        "ppl": pa.array(np.exp(loss) * nan),
        "ppl_epoch": pa.array(list(p * nan[:, None]), pa.list_(pa.float64())),
        "trajectory": pa.array(list(traj * nan[:, None]), pa.list_(pa.float64())),
        "lp": pa.array(lp * nan),
        "lp_app": pa.array(lp_app * nan),
        "ifd": pa.array(ifd * nan),
        "ifd_loss": pa.array(np.log(ifd) * nan),
        "ask_llm": pa.array(rng.beta(2, 3, size=n)),
        "density": pa.array(rng.gamma(3, 0.01, size=n)),
        "cluster": pa.array(cluster, pa.int64()),
    }
    return pa.table(cols)


def _meta(method: str, params: dict, budget: float, selection) -> dict:
    return {"method": method, "params": params, "budget": budget, "budget_resolved": selection.budget,
            "seed": 0, "stratify": None, "n_pool": len(selection.ids), "n_selected": selection.n_selected,
            "notes": selection.notes, "data_fingerprint": "", "file": "selected.jsonl"}


def _write_selection(run, name: str, selection, meta: dict, mtime: float) -> None:
    from proxysel.store import atomic_write_json, atomic_write_parquet, atomic_write_text

    folder = run.selection_dir(name)
    atomic_write_parquet(folder / "selection.parquet", selection.to_arrow())
    if meta is not None:
        atomic_write_json(folder / "meta.json", meta)
    atomic_write_text(folder / "selected.jsonl", "".join(json.dumps({"id": i}) + "\n"
                                                         for i in selection.selected_ids))
    os.utime(folder / "selection.parquet", (mtime, mtime))


def build_run(root: Path, n: int = 300, *, seed: int = 0, dim: int = 16, selections: bool = True,
              embeddings: bool = True, meta: bool = True, epochs: int = 3) -> SyntheticRun:
    """A complete run folder at ``root/run`` with its input data at ``root/pool.jsonl``."""
    from proxysel.data import read_pool
    from proxysel.selectors import get_selector
    from proxysel.selectors.base import ScoreTable
    from proxysel.store import Run

    root.mkdir(parents=True, exist_ok=True)
    data = root / "pool.jsonl"
    ids = write_pool(data, n, seed)
    pool = read_pool(data)
    table = scores_table(ids, seed, epochs=epochs)
    run_dir = root / "run"
    names: tuple[str, ...] = ()
    with Run.open(run_dir) as run:
        run.update_manifest(
            data={"path": str(data), "fingerprint": pool.fingerprint, "n_examples": n, "files": pool.paths,
                  "read_options": {"format": None, "columns": None, "on_bad_record": "error", "limit": None,
                                   "dedupe": False}},
            skipped_records=[{"file": str(data), "line": n + 1, "offset": 123, "field": "output",
                              "reason": f"empty response {SCRIPT}"}])
        fp = {"data": pool.fingerprint, "model": "smollm2-135m", "revision": "0123456789abcdef"}
        run.record_stage("train-proxy", {"fingerprint": fp, "status": "complete", "seconds": 754.2,
                                         "examples": n, "tokens_per_s": 181.5,
                                         "completed": "2025-01-01T10:00:00Z",
                                         "plan": {"checkpoints": [0, 4, 8, 12, 16, 20]}})
        run.record_stage("embedding", {"fingerprint": {"data": pool.fingerprint, "model": "minilm"},
                                       "status": "complete", "seconds": 12.5, "examples": n})
        run.merge_scores(table)
        if embeddings:
            rng = np.random.default_rng(seed + 1)
            centres = rng.normal(0, 3, size=(4, dim))
            emb = centres[np.asarray(table.column("cluster")) % 4] + rng.normal(0, 1, size=(n, dim))
            run.write_embeddings(ids, emb.astype(np.float32), model="minilm")
        if selections:
            scores = ScoreTable.from_arrow(table)
            top = get_selector("top")(signal="ppl", order="low").select(scores, 0.2, seed=0)
            lp = get_selector("lp")(clusters=None).select(scores, 0.3, seed=0)
            # meta.json as `proxysel select` writes it (the lp signal is implied by the method)
            _write_selection(run, "ppl-low", top, _meta("top", {"signal": "ppl", "order": "low"}, 0.2, top)
                             if meta else None, 1_700_000_000)
            _write_selection(run, "lp-30", lp, _meta("lp", {}, 0.3, lp) if meta else None, 1_700_000_100)
            names = ("ppl-low", "lp-30")
    return SyntheticRun(run=run_dir, data=data, ids=ids, selections=names)
