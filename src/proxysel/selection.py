"""`select` and `compare`: run a registered selector over a run's scores and write the subset.

RUN/selections/NAME/
  selected.<ext>       the selected input records, verbatim, in input order
  selection.parquet    id, selected, rank, cluster, reason (+ count with replacement)
  meta.json            method, parameters, budget, seed, counts, notes, data fingerprint
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from proxysel.errors import RunConflictError, UsageError

log = logging.getLogger(__name__)

#: methods whose default is clustered selection over the stored embeddings (DESIGN: k = 100)
EMBEDDING_CLUSTERED = ("lp", "lp_app")
DEFAULT_CLUSTERS = 100


def parse_budget(budget: str | float | int) -> float | int:
    """``0.1`` -> a fraction, ``5000`` -> a count. Clear error otherwise."""
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        value: float | int = budget
    else:
        try:
            value = int(budget)
        except ValueError:
            try:
                value = float(budget)
            except ValueError:
                raise UsageError(f"--budget must be a fraction in (0, 1) or a count >= 1, got {budget!r}") from None
    if isinstance(value, float) and value.is_integer() and value >= 1:
        value = int(value)
    if (isinstance(value, float) and not 0 < value < 1) or (isinstance(value, int) and value < 1):
        raise UsageError(f"--budget must be a fraction in (0, 1) or a count >= 1, got {budget!r}")
    return value


def default_name(method: str, budget: float | int, seed: int, signal: str | None = None,
                 order: str | None = None) -> str:
    b = f"{budget:g}" if isinstance(budget, float) else str(budget)
    parts = [method] + ([signal] if signal else []) + ([order] if order else []) + [b, f"s{seed}"]
    return "-".join(parts)


def _data_block(run: Any) -> dict[str, Any]:
    data = run.manifest.get("data")
    if not data or "path" not in data:
        raise UsageError(f"run folder {run.path} has no input data recorded; run `proxysel score` or "
                         "`proxysel train-proxy` into it first")
    return data


def read_run_pool(run: Any, data: str | Path | None = None) -> Any:
    """Read the run's input again, with the options it was read with; check it did not change."""
    from proxysel.data import read_pool

    block = _data_block(run)
    opts = dict(block.get("read_options") or {})
    pool = read_pool(data or block["path"], **opts)
    if pool.fingerprint != block.get("fingerprint"):
        raise UsageError(f"the input data at {data or block['path']} changed since it was scored "
                         f"(fingerprint {pool.fingerprint[:12]} != {str(block.get('fingerprint'))[:12]}); "
                         "score it again or point --data at the original")
    return pool


def build_table(run: Any, pool: Any, need_embeddings: bool, stratify: str | None) -> Any:
    """The run's scores as a ScoreTable in pool order, with embeddings and a source column if needed."""
    from proxysel.selectors.base import ScoreTable

    scores = run.read_scores()
    if scores is None:
        raise UsageError(f"run folder {run.path} has no scores.parquet; run `proxysel score` or "
                         "`proxysel train-proxy` into it first")
    table = ScoreTable.from_arrow(scores)
    pos = {i: k for k, i in enumerate(table.ids)}
    order = []
    missing = []
    for e in pool.examples:
        k = pos.get(e.id)
        (missing if k is None else order).append(e.id if k is None else k)
    if missing:
        raise UsageError(f"{len(missing)} examples of the input have no scores (first: {missing[:3]}); "
                         "rerun the scoring stage")
    order_a = np.asarray(order, dtype=np.int64)
    cols = {name: col[order_a] for name, col in table.columns.items()}
    if need_embeddings:
        ids, vecs = run.read_embeddings()
        epos = {i: k for k, i in enumerate(ids)}
        try:
            cols["embedding"] = vecs[np.asarray([epos[e.id] for e in pool.examples], dtype=np.int64)]
        except KeyError as e:
            raise UsageError(f"example {e.args[0]!r} has no embedding; rerun "
                             f"`proxysel score DATA --signals embedding --out {run.path}`") from None
    if stratify:
        values = []
        for e in pool.examples:
            v = e.record.get(stratify) if isinstance(e.record, dict) else None
            if v is None:
                raise UsageError(f"--stratify {stratify}: {e.file}:{e.line} has no field '{stratify}'")
            values.append(str(v))
        cols["source"] = np.asarray(values, dtype=object)
    return ScoreTable(ids=[e.id for e in pool.examples], columns=cols,
                      truncated=np.asarray(table.truncated)[order_a])


def select_run(run_dir: str | Path, *, method: str, budget: str | float | int, seed: int = 0,
               name: str | None = None, params: dict[str, Any] | None = None, stratify: str | None = None,
               data: str | Path | None = None, overwrite: bool = False) -> Path:
    """Select from ``run_dir``'s scores with the registered selector ``method`` and write the subset.

    params: the selector's own parameters (``clusters``, ``signal``, ``order``, ``rounding``,
    ``within_clusters``, ``with_replacement``, ...). Returns RUN/selections/NAME.
    """
    from proxysel.data import write_selected
    from proxysel.selectors.registry import get_selector
    from proxysel.store import Run
    from proxysel.store.atomic import atomic_write_json, atomic_write_parquet
    from proxysel.store.digest import file_sha256

    b = parse_budget(budget)
    params = {k: v for k, v in (params or {}).items() if v is not None}
    if stratify:
        if method != "s2l":
            raise UsageError(f"--stratify is an option of s2l, not of {method}")
        params["stratify"] = "source"  # the column build_table fills from the records' field
    try:
        cls = get_selector(method)
    except ValueError as e:
        raise UsageError(f"--method: {e}") from None
    with Run.open(run_dir, create=False) as run:
        scores = run.read_scores()
        has_cluster = scores is not None and "cluster" in scores.column_names
        if method in EMBEDDING_CLUSTERED and params.get("within_clusters", True) and "clusters" not in params \
                and not has_cluster:
            params["clusters"] = DEFAULT_CLUSTERS
        try:
            selector = cls(**params)
        except (TypeError, ValueError) as e:
            raise UsageError(f"selector {method}: {e}") from None
        features = getattr(selector, "cluster_features", None)
        clustered = bool(getattr(selector, "within_clusters", False)) or method == "s2l"
        need_emb = bool(clustered and getattr(selector, "clusters", None) is not None and features == "embedding")
        pool = read_run_pool(run, data)
        table = build_table(run, pool, need_emb, stratify)
        try:
            sel = selector.select(table, b, seed=seed)
        except ValueError as e:
            raise UsageError(f"selector {method}: {e}") from None
        name = name or default_name(method, b, seed, params.get("signal"), params.get("order"))
        out = run.selection_dir(name)
        # Rows that could not compete (NaN/inf signal, truncated) are counted here and named, row by
        # row, in selection.parquet: nothing is left out without a word.
        excluded: dict[str, int] = {}
        for why in sel.reason:
            if why.startswith("excluded"):
                excluded[why] = excluded.get(why, 0) + 1
        meta = {"method": method, "params": params, "budget": b, "budget_resolved": sel.budget, "seed": seed,
                "stratify": stratify, "n_pool": table.n, "n_selected": sel.n_selected, "notes": sel.notes,
                "excluded": dict(sorted(excluded.items())), "data_fingerprint": pool.fingerprint}
        meta_path = out / "meta.json"
        if meta_path.exists() and not overwrite:
            old = json.loads(meta_path.read_text())
            if {k: old.get(k) for k in ("method", "params", "budget", "seed", "stratify", "data_fingerprint")} != \
                    {k: meta.get(k) for k in ("method", "params", "budget", "seed", "stratify", "data_fingerprint")}:
                raise RunConflictError(f"selection '{name}' exists with other parameters ({old.get('method')}, "
                                       f"budget {old.get('budget')}, seed {old.get('seed')}); pass --name for a "
                                       "new one or --overwrite to replace it")
        chosen = [e for e, s in zip(pool.examples, sel.selected) if s]
        for old_file in out.glob("selected.*"):
            old_file.unlink()
        path = write_selected(chosen, out, stem="selected")
        atomic_write_parquet(out / "selection.parquet", sel.to_arrow())
        meta["file"] = path.name
        # what `proxysel verify` checks the files against (meta.json is written last)
        meta["sha256"] = {p.name: file_sha256(p) for p in (path, out / "selection.parquet")}
        atomic_write_json(meta_path, meta)
        run.record_stage(f"select:{name}", {"method": method, "n_selected": sel.n_selected})
    for note in sel.notes:
        log.info("%s: %s", name, note)
    for why, n in sorted(excluded.items()):
        log.warning("%s: %d of %d examples could not be selected (%s)", name, n, table.n, why)
    return out


def topk_overlap(a: np.ndarray, b: np.ndarray, fraction: float, order: str) -> float:
    """|top_a ∩ top_b| / k for the k = round(fraction * n) first examples of each ranking."""
    n = len(a)
    k = max(1, int(round(fraction * n)))
    sign = 1.0 if order == "low" else -1.0
    ta = set(np.argsort(sign * a, kind="stable")[:k].tolist())
    tb = set(np.argsort(sign * b, kind="stable")[:k].tolist())
    return len(ta & tb) / k


def compare_runs(run_a: str | Path, run_b: str | Path, *, signal: str = "loss", signal_b: str | None = None,
                 order: str = "low", fractions: Sequence[float] = (0.01, 0.05, 0.1, 0.3)) -> dict[str, Any]:
    """Does a small proxy rank like a bigger one? Spearman and Kendall of ``signal`` between two
    runs over the ids they share (finite in both), and the overlap of their top fractions
    (``order`` low: lowest first, as for loss/LP; high for ask_llm/ifd)."""
    import pyarrow.parquet as pq
    from scipy.stats import kendalltau, spearmanr

    if order not in ("low", "high"):
        raise UsageError(f"--order must be low or high, got {order!r}")

    def load(run: str | Path, col: str) -> dict[str, float]:
        p = Path(run) / "scores.parquet"
        if not p.is_file():
            raise UsageError(f"{run}: no scores.parquet")
        t = pq.read_table(p)
        if col not in t.column_names:
            raise UsageError(f"{p}: no column '{col}' (columns: {', '.join(t.column_names)})")
        return dict(zip(t.column("id").to_pylist(), t.column(col).to_pylist()))

    sa, sb = load(run_a, signal), load(run_b, signal_b or signal)
    ids = [i for i in sa if i in sb and sa[i] is not None and sb[i] is not None
           and np.isfinite(sa[i]) and np.isfinite(sb[i])]
    if len(ids) < 3:
        raise UsageError(f"only {len(ids)} shared examples with finite {signal}: nothing to compare")
    a = np.asarray([sa[i] for i in ids], dtype=np.float64)
    b = np.asarray([sb[i] for i in ids], dtype=np.float64)
    return {"n": len(ids), "signal": signal, "signal_b": signal_b or signal, "order": order,
            "spearman": float(spearmanr(a, b).statistic), "kendall": float(kendalltau(a, b).statistic),
            "overlap": {f: topk_overlap(a, b, f, order) for f in fractions}}


def format_compare(res: dict[str, Any]) -> str:
    lines = [f"{res['signal']} vs {res['signal_b']} over {res['n']} shared examples ({res['order']} first)",
             f"  Spearman {res['spearman']:+.4f}   Kendall {res['kendall']:+.4f}",
             "  overlap of the selections:"]
    lines += [f"    top {100 * f:g}%: {v:.1%} (random: {f:.0%})" for f, v in res["overlap"].items()]
    return "\n".join(lines)
