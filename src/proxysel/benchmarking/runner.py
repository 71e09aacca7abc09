"""``proxysel bench``: proxy signals once, every (selector, budget, seed) subset, a target trained on
each, evaluated on held-out data, tabulated and plotted. Every step resumes.

Layout of the bench folder ``OUT/``:

    config.yaml            the resolved config
    data/pool.jsonl        the pool (generated, or copied from ShareGPT); data/eval.jsonl the held-out set
                           (skewed: data/reference.jsonl too, what target-aware selectors read)
    models/proxy, target   scratch models (random init + a tokenizer trained on the pool)
    proxy/                 the proxy's run folder (api.train_proxy, + embeddings for lp/lp_app);
                           its selections/NAME/ are the subsets
    cells/NAME/result.json one trained target: fingerprint, counts, steps, metrics, keep rates.
                           A rerun skips every cell whose result is there with the same fingerprint
    winrate/NAME.json      (winrate.enabled) the judge's verdicts on cell NAME's answers against full-s<seed>'s,
                           both orders, and their summary; cells/NAME/result.json then holds the answers
    target-signals/        the transfer check: api.train_proxy with the target model
    results.csv            one row per cell (seed level)
    results.md             mean and spread over seeds per (selector, budget), plus full; keep rates;
                           transfer
    keep_rates.csv         per selector, budget, seed: kept share of every family / difficulty / noise type
    plot.png               held-out loss (and exact match) against budget, one line per selector

Cell names: ``full-s0``, ``random-0.1-s0``, ``lp_app-0.1-s0``. Seed s seeds the selection and
the target's data order; a scratch target starts from the same initial weights in every cell.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from proxysel.benchmarking.config import BenchConfig, bench_config_dict
from proxysel.errors import RunConflictError, UsageError

log = logging.getLogger(__name__)

GROUP_FIELDS = ("family", "difficulty", "noise")


@dataclass(frozen=True)
class Cell:
    selector: str  # "base" (the untrained target), "full", "random" or a SelectorSpec name
    budget: float | None  # None for base and full
    seed: int

    @property
    def name(self) -> str:
        if self.selector == "base":
            return "base"
        return f"full-s{self.seed}" if self.budget is None else f"{self.selector}-{self.budget:g}-s{self.seed}"


def plan_cells(cfg: BenchConfig) -> list[Cell]:
    """The untrained target (one evaluation, no seed to vary), full data (the reference), then per
    budget and seed: random, then each selector."""
    cells = [Cell("base", None, cfg.seeds[0])] + [Cell("full", None, s) for s in cfg.seeds]
    for b in cfg.budgets:
        for s in cfg.seeds:
            cells.append(Cell("random", b, s))
            cells += [Cell(sel.name, b, s) for sel in cfg.selectors]
    return cells


# ------------------------------------------------------------------------------------------ data


def prepare_data(cfg: BenchConfig, out: Path) -> tuple[Path, Path]:
    """Write (or find) data/pool.jsonl and data/eval.jsonl (and, for ``skewed``, data/reference.jsonl);
    paths of ``files`` data are used as they are."""
    from proxysel.store.atomic import atomic_write_text

    d = cfg.data
    if d.kind == "files":
        for p in (d.pool, d.eval):
            if not Path(p).exists():
                raise UsageError(f"config field 'data.{'pool' if p == d.pool else 'eval'}': {p} not found")
        return Path(d.pool), Path(d.eval)
    pool_path, eval_path = out / "data" / "pool.jsonl", out / "data" / "eval.jsonl"
    extra: list[tuple[Path, list[dict[str, Any]]]] = []
    if d.kind == "skewed":
        from proxysel.benchmarking.skewed import make_sets

        noise = {"wrong": d.noise.wrong, "garbage": d.noise.garbage, "near_duplicate": d.noise.near_duplicate,
                 "duplicate": d.noise.duplicate}
        pool, reference, test = make_sets(d.n_pool, n_eval_per_family=d.eval_per_family,
                                          n_reference_per_family=d.reference_per_family, noise=noise,
                                          seed=d.seed)
        extra.append((out / "data" / "reference.jsonl", reference))
    elif d.kind == "synthetic":
        from proxysel.benchmarking.synthetic import make_pool, make_test_set

        noise = {"wrong": d.noise.wrong, "garbage": d.noise.garbage, "duplicate": d.noise.duplicate}
        pool = make_pool(d.n_pool, families=d.families, difficulties=d.difficulties, noise=noise, seed=d.seed)
        test = make_test_set(d.n_eval, pool, families=d.families, difficulties=d.difficulties, seed=d.seed)
    else:  # sharegpt: the first n_pool qualifying pairs, then the next n_eval (disjoint)
        from proxysel.data.sharegpt_demo import sharegpt_pairs

        pairs = sharegpt_pairs(d.n_pool + d.n_eval, max_chars=d.max_chars)  # one pass over the 125 MB file
        pool, test = pairs[:d.n_pool], pairs[d.n_pool:]
    for path, records in [(pool_path, pool), (eval_path, test), *extra]:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
    return pool_path, eval_path


def prepare_models(cfg: BenchConfig, out: Path, pool: Any) -> tuple[str, str]:
    """The proxy and target model specs; scratch ones are built once under models/."""
    specs = []
    tokenizer = None
    for role, recipe in (("proxy", cfg.proxy), ("target", cfg.target)):
        if recipe.model != "scratch":
            specs.append(recipe.model)
            continue
        folder = out / "models" / role
        key = {"vocab_size": cfg.vocab_size, "scratch": bench_config_dict(recipe.scratch),
               "data": pool.fingerprint}
        marker = folder / "BUILT.json"
        if marker.exists() and json.loads(marker.read_text()) == key:
            specs.append(str(folder))
            continue
        from proxysel.models.scratch import build_llama, build_tokenizer, llama_parameters

        if tokenizer is None:
            texts = [m.content for e in pool.examples for m in e.messages]
            tokenizer = build_tokenizer(texts, vocab_size=cfg.vocab_size)
        shutil.rmtree(folder, ignore_errors=True)
        s = recipe.scratch
        build_llama(tokenizer, folder, hidden=s.hidden, layers=s.layers, heads=s.heads,
                    intermediate=s.intermediate, seed=s.seed)
        log.info("built scratch %s: %s parameters", role,
                 f"{llama_parameters(len(tokenizer), s.hidden, s.layers, s.intermediate):,}")
        marker.write_text(json.dumps(key))
        specs.append(str(folder))
    return specs[0], specs[1]


# ------------------------------------------------------------------------------------ the bench


def _echo(echo: Callable[[str], None] | None) -> Callable[[str], None]:
    def say(msg: str) -> None:
        if echo is None:
            log.info(msg)
        else:  # the caller shows it; the log file still gets it
            log.debug(msg)
            echo(msg)
    return say


def run_bench(cfg: BenchConfig, *, overwrite: bool = False, echo: Callable[[str], None] | None = None) -> Path:
    """Run (or resume) the bench ``cfg`` describes; returns its folder. See the module docstring.

    echo: called with one line per step and per cell (progress); None logs them instead.
    """
    if cfg.threads is None:
        return _run_bench(cfg, overwrite=overwrite, echo=echo)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _run_bench(cfg, overwrite=overwrite, echo=echo)
    finally:
        torch.set_num_threads(before)  # the option is this bench's, not the caller's process


def _run_bench(cfg: BenchConfig, *, overwrite: bool, echo: Callable[[str], None] | None) -> Path:
    from proxysel import api
    from proxysel.config import dump_config
    from proxysel.data import read_pool
    from proxysel.store.atomic import atomic_write_text

    say = _echo(echo)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(cfg, "proxysel bench: the resolved config"))
    t_start = time.perf_counter()

    pool_path, eval_path = prepare_data(cfg, out)
    pool = read_pool(pool_path)
    held_out = read_pool(eval_path)
    proxy_spec, target_spec = prepare_models(cfg, out, pool)
    say(f"bench {out}: pool {len(pool.examples)}, held-out {len(held_out.examples)}, proxy {proxy_spec}, "
        f"target {target_spec}")

    # 1. proxy signals, once (api.train_proxy resumes; a finished stage recomputes nothing)
    t0 = time.perf_counter()
    proxy_run = out / "proxy"
    p = cfg.proxy
    api.train_proxy(pool_path, out=proxy_run, model=proxy_spec, epochs=p.epochs, checkpoints=p.checkpoints,
                    lp_epoch=p.lp_epoch, seed=p.seed, online=p.online, max_length=p.max_length,
                    template=p.template, overwrite=overwrite, device=cfg.device, **p.train_kwargs())
    add_epoch_columns(proxy_run)
    if any(s.needs_embeddings for s in cfg.selectors):
        api.score(pool_path, out=proxy_run, signals=["embedding"], embedder=cfg.embedder, overwrite=overwrite,
                  device=cfg.device)
    say(f"proxy signals ready in {time.perf_counter() - t0:.0f}s ({proxy_run})")

    # 2. every selection
    specs = {s.name: s for s in cfg.selectors}
    cells = plan_cells(cfg)
    selections: dict[str, Path] = {}
    for cell in cells:
        if cell.budget is None:
            continue
        method, params = ("random", {}) if cell.selector == "random" else \
            (specs[cell.selector].method, specs[cell.selector].params())
        selections[cell.name] = api.select(proxy_run, method=method, budget=cell.budget, seed=cell.seed,
                                           name=cell.name, overwrite=overwrite, **params)

    # 3-5. train and evaluate the target on every subset (cached per cell); the tables are rewritten
    # after every cell so that a bench stopped by a time limit still leaves them
    from proxysel.benchmarking.report import write_outputs

    by_id = {e.id: e for e in pool.examples}
    groups = _eval_groups(held_out)
    rows = []
    for k, cell in enumerate(cells, 1):
        ids = None if cell.budget is None else _selected_ids(selections[cell.name])
        row = run_cell(cfg, out, cell, target_spec, pool, held_out, ids, by_id, groups, overwrite=overwrite,
                       prefix=f"[{k}/{len(cells)}]", say=say)
        rows.append(row)
        if k < len(cells) or cfg.transfer.enabled or cfg.winrate.enabled:  # else the final write follows at once
            write_outputs(cfg, out, rows, None, pool, pending=len(cells) - k)

    # 6. win rate against full data (opt-in), transfer check, tables and plot
    if cfg.winrate.enabled:
        from proxysel.benchmarking.winrate import run_winrate

        judged = run_winrate(cfg, out, rows, held_out, say=say)
        for i, r in enumerate(rows):
            if r["cell"] in judged:  # copies: the cells' result.json files stay as they are
                rows[i] = {**r, "winrate": judged[r["cell"]],
                           "metrics": {**r["metrics"], "win_rate": judged[r["cell"]]["win_rate"]}}
    transfer = run_transfer(cfg, out, pool_path, target_spec, overwrite=overwrite, say=say) \
        if cfg.transfer.enabled else None
    write_outputs(cfg, out, rows, transfer, pool)
    say(f"bench done in {time.perf_counter() - t_start:.0f}s: {out / 'results.md'}, {out / 'plot.png'}")
    return out


def add_epoch_columns(run_dir: Path) -> list[str]:
    """Add ``ppl_<e>`` (P_e, e = 0..n) and ``lp_<i>``, ``lp_app_<i>`` (i = 1..n) to the run's scores.

    ``train-proxy`` stores ``lp``/``lp_app`` for one epoch (``--lp-epoch``); these columns let the
    variants the papers allow (LP(2) against LP(1), a perplexity band after training) be
    selected with ``top`` from the same proxy run. Returns the names added.
    """
    import numpy as np
    import pyarrow as pa

    from proxysel.signals.lp import lp, lp_app
    from proxysel.store import Run

    with Run.open(run_dir, create=False) as run:
        scores = run.read_scores()
        if scores is None or "ppl_epoch" not in scores.column_names:
            return []
        rows = scores.column("ppl_epoch").to_pylist()
        width = max((len(r) for r in rows if r is not None), default=0)
        ppl = np.array([r if r is not None else [np.nan] * width for r in rows], dtype=np.float64)
        cols: dict[str, Any] = {"id": scores.column("id")}
        for e in range(ppl.shape[1]):
            cols[f"ppl_{e}"] = pa.array(ppl[:, e], pa.float64())
        for i in range(1, ppl.shape[1]):
            cols[f"lp_{i}"] = pa.array(lp(ppl, i), pa.float64())
            cols[f"lp_app_{i}"] = pa.array(lp_app(ppl, i), pa.float64())
        names = [c for c in cols if c != "id"]
        if all(c in scores.column_names for c in names):
            return names  # already there (derived from the same stored ppl_epoch)
        run.merge_scores(pa.table(cols))
    return names


def _selected_ids(selection_dir: Path) -> list[str]:
    import pyarrow.parquet as pq

    t = pq.read_table(selection_dir / "selection.parquet", columns=["id", "selected"]).to_pydict()
    return [i for i, s in zip(t["id"], t["selected"]) if s]


def _eval_groups(held_out: Any) -> list[str] | None:
    fams = [e.record.get("family") if isinstance(e.record, dict) else None for e in held_out.examples]
    return None if any(f is None for f in fams) else [str(f) for f in fams]


def keep_rates(pool: Any, ids: list[str] | None) -> dict[str, dict[str, dict[str, float]]]:
    """{field: {value: {"n": pool count, "kept": selected count, "rate": kept / n}}} for GROUP_FIELDS."""
    chosen = set(ids) if ids is not None else None
    out: dict[str, dict[str, dict[str, float]]] = {}
    for f in GROUP_FIELDS:
        counts: dict[str, list[int]] = {}
        for e in pool.examples:
            rec = e.record if isinstance(e.record, dict) else {}
            if f not in rec:
                continue
            c = counts.setdefault(str(rec[f]), [0, 0])
            c[0] += 1
            c[1] += int(chosen is None or e.id in chosen)
        if counts:
            out[f] = {v: {"n": n, "kept": kept, "rate": kept / n} for v, (n, kept) in sorted(counts.items())}
    return out


def run_cell(cfg: BenchConfig, out: Path, cell: Cell, target_spec: str, pool: Any, held_out: Any,
             ids: list[str] | None, by_id: dict[str, Any], groups: list[str] | None, *, overwrite: bool,
             prefix: str, say: Callable[[str], None]) -> dict[str, Any]:
    """Train + evaluate one cell, or read its cached result. Returns the result dict."""
    from proxysel.benchmarking import winrate
    from proxysel.benchmarking.target import evaluate_target, matched_epochs, train_target, untrained_target
    from proxysel.models.loader import resolve_model_path
    from proxysel.store.atomic import atomic_write_json
    from proxysel.store.run import content_hash, fingerprint_diff

    base = cell.selector == "base"
    examples = [] if base else pool.examples if ids is None else [by_id[i] for i in ids]
    eff = cfg.target.batch_size * cfg.target.grad_accum
    epochs = 0 if base else cfg.target.epochs
    if cfg.match == "steps" and ids is not None:
        epochs = matched_epochs(len(examples), len(pool.examples), eff, cfg.target.epochs)
    exact = cfg.eval.exact_match if cfg.eval.exact_match is not None \
        else cfg.data.kind in ("synthetic", "skewed")
    _, revision = resolve_model_path(target_spec)
    # the untrained target depends on no training setting, only on how the held-out set is rendered
    recipe = {k: getattr(cfg.target, k) for k in ("max_length", "template")} if base \
        else bench_config_dict(cfg.target)
    fingerprint = {"target": target_spec, "revision": revision, "recipe": recipe,
                   "epochs": epochs, "seed": None if base else cell.seed,
                   "train_ids": content_hash([e.id for e in examples]),
                   "eval_data": held_out.fingerprint, "exact_match": exact,
                   "eval": bench_config_dict(cfg.eval), "device": cfg.device}
    folder = out / "cells" / cell.name
    result_path = folder / "result.json"
    # the win rate needs every trained target's answers to the first winrate.n held-out prompts
    answers_key = winrate.answers_key(cfg.winrate) if cfg.winrate.enabled and not base else None
    cached = None
    if result_path.exists():
        old = json.loads(result_path.read_text())
        if old.get("fingerprint") == fingerprint:
            if answers_key is None or (old.get("answers") or {}).get("key") == answers_key:
                say(f"{prefix} {cell.name}: cached (held-out loss {old['metrics']['eval_loss']:.4f})")
                return old
            cached = old  # trained before the win rate was asked for: train again, only to answer
        elif not overwrite:
            diff = "; ".join(fingerprint_diff(old.get("fingerprint", {}), fingerprint)[:4])
            raise RunConflictError(f"cell {cell.name} in {out} was trained with other settings ({diff}); "
                                   "use another --out or pass --overwrite")
    if base:
        say(f"{prefix} base: the target before training")
        trained = untrained_target(target_spec, cfg.target, device=cfg.device)
    else:
        again = " again, only to answer the win-rate prompts (its metrics are kept)" if cached else ""
        say(f"{prefix} {cell.name}: training{again} on {len(examples)} examples for {epochs} epoch(s)")
        trained = train_target(target_spec, cfg.target, examples, epochs=epochs, seed=cell.seed,
                               state_dir=folder / "state", device=cfg.device, batch_tokens=cfg.eval.batch_tokens)
    if cached is None:
        metrics = evaluate_target(trained, held_out.examples, exact_match=exact,
                                  max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size,
                                  batch_tokens=cfg.eval.batch_tokens, groups=groups)
        result = {"cell": cell.name, "selector": cell.selector, "budget": cell.budget, "seed": cell.seed,
                  "fingerprint": fingerprint, "n_train": trained.n_train, "n_selected": len(examples),
                  "epochs": epochs, "steps": trained.steps, "train_seconds": round(trained.seconds, 2),
                  "train_loss_last": trained.train_loss_last, "metrics": metrics,
                  "keep_rates": {} if base else keep_rates(pool, ids)}
    else:
        result, metrics = cached, cached["metrics"]
        was, now = cached.get("train_loss_last"), trained.train_loss_last
        if was is not None and now is not None and abs(was - now) > 1e-4 * max(1.0, abs(was)):
            log.warning("%s was trained again for its answers and ended at training loss %.6f, not the "
                        "recorded %.6f: the answers come from a slightly different model than the metrics",
                        cell.name, now, was)
    if answers_key is not None:
        result["answers"] = winrate.answer_prompts(trained, held_out.examples, cfg.winrate,
                                                   batch_size=cfg.eval.batch_size)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result_path, result)
    shutil.rmtree(folder / "state", ignore_errors=True)
    em = f", exact match {metrics['exact_match']:.1%}" if "exact_match" in metrics else ""
    say(f"{prefix} {cell.name}: {trained.steps} steps in {trained.seconds:.0f}s -> held-out loss "
        f"{metrics['eval_loss']:.4f}{em}")
    return result


def run_transfer(cfg: BenchConfig, out: Path, pool_path: Path, target_spec: str, *, overwrite: bool,
                 say: Callable[[str], None]) -> dict[str, Any]:
    """Train-proxy with the target model on the pool; Spearman/overlap of its signals with the proxy's."""
    from proxysel import api

    t = cfg.target
    run = out / "target-signals"
    t0 = time.perf_counter()
    say(f"transfer: train-proxy with the target ({cfg.transfer.epochs} epoch(s)) into {run}")
    checkpoints = cfg.proxy.checkpoints if cfg.proxy.checkpoints >= 2 else 0
    api.train_proxy(pool_path, out=run, model=target_spec, epochs=cfg.transfer.epochs, checkpoints=checkpoints,
                    seed=cfg.proxy.seed, max_length=t.max_length, template=t.template, overwrite=overwrite,
                    device=cfg.device, **t.train_kwargs())
    signals = ["lp_app"] + (["lp"] if cfg.transfer.epochs >= 2 and cfg.proxy.epochs >= 2 else [])
    res = {s: api.compare(out / "proxy", run, signal=s) for s in signals}
    say("transfer: " + ", ".join(f"{s} Spearman {r['spearman']:+.3f}" for s, r in res.items())
        + f" ({time.perf_counter() - t0:.0f}s)")
    return res
