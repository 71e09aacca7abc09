"""``proxysel bench``: proxy signals once, every (selector or baseline, budget, seed) subset, a target
trained on each, evaluated on the eval set, tabulated, compared and plotted. Every step resumes.

Layout of the bench folder ``OUT/``:

    config.yaml            the resolved config
    data/                  generated kinds: pool.jsonl, eval.jsonl and (with one) reference.jsonl
    models/proxy, target   scratch models (random init + a tokenizer trained on the pool)
    proxy/                 the proxy's run folder (train-proxy, + the score signals the selectors read,
                           e.g. embedding, color, rds); its selections/NAME/ are the subsets
    cells/NAME/result.json one trained target: fingerprint, counts, steps, metrics (per group, pooled,
                           macro), per-example eval arrays, keep rates, its training tokens and FLOPs.
                           A rerun skips every cell whose result is there with the same fingerprint
    winrate/NAME.json      (winrate.enabled) the judge's verdicts on cell NAME's answers against
                           full-s<seed>'s, both orders, and their summary; cells/NAME/result.json then
                           holds the answers
    target-signals/        the transfer check: api.train_proxy with the target model
    results.csv            one row per cell (seed level)
    results.md             the headline (macro) and pooled metrics per (selector, budget), verdicts,
                           per-group tables, the compute ledger, keep rates, transfer
    stats.json             the paired comparisons (vs random, vs full) behind the verdicts
    ledger.json            the compute ledger per selector
    ledger-params.json     N of the proxy model (ledger.model_params), by spec and revision
    keep_rates.csv         per selector, budget, seed: kept share of every family / difficulty / noise type
    plot.png               macro eval loss (and exact match) against budget, one line per selector

Cell names: ``full-s0``, ``random-0.1-s0``, ``longest-0.1-s0``, ``lp_app-0.1-s0``. Seed s seeds the
selection and the target's data order; a scratch target starts from the same initial weights in
every cell.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pyarrow as pa

from proxysel.benchmarking import winrate
from proxysel.benchmarking.analysis import choice_stages, example_arrays, example_metrics, example_record
from proxysel.benchmarking.config import BenchConfig, bench_config_dict, needs_reference
from proxysel.benchmarking.datasets import check_leakage, prepare_data
from proxysel.benchmarking.groups import GROUP_RULES, eval_groups, group_key
from proxysel.benchmarking.ledger import model_params, proxy_costs_from_run, train_flops
from proxysel.benchmarking.report import Context, write_outputs
from proxysel.benchmarking.target import evaluate_target, matched_epochs, train_target, untrained_target
from proxysel.config import dump_config
from proxysel.data import read_pool
from proxysel.errors import RunConflictError
from proxysel.models.loader import load_causal_lm, resolve_model_path
from proxysel.models.scratch import build_llama, build_tokenizer, llama_parameters
from proxysel.options import ConfigError, ReadConfig, RuntimeConfig
from proxysel.selectors.config import SelectConfig, ordered_by_parent
from proxysel.signals import available_signals, get_signal, producer_of
from proxysel.signals.cartography import COLUMNS as CARTOGRAPHY_COLUMNS
from proxysel.signals.config import ScoreConfig
from proxysel.signals.embedding import embedder_path, load_embedder
from proxysel.signals.lp import derived_column
from proxysel.stages.compare import compare_runs
from proxysel.stages.inputs import record_reference
from proxysel.stages.score import score
from proxysel.stages.select import select_run
from proxysel.stages.train_proxy import train_proxy
from proxysel.store import Run, RunFolder
from proxysel.store.atomic import atomic_write_json, atomic_write_text
from proxysel.store.run import content_hash, fingerprint_diff

log = logging.getLogger(__name__)

#: record fields whose values get keep rates (plus the rule of data.group_by or data.category)
GROUP_FIELDS = ("family", "difficulty", "noise")


@dataclass(frozen=True)
class Cell:
    selector: str  # "base" (the untrained target), "full", a baseline or a SelectorSpec name
    budget: float | None  # None for base and full
    seed: int

    @property
    def name(self) -> str:
        if self.selector == "base":
            return "base"
        return (f"full-s{self.seed}" if self.budget is None
                else f"{self.selector}-{self.budget:g}-s{self.seed}")


def plan_cells(cfg: BenchConfig) -> list[Cell]:
    """The untrained target (one evaluation, no seed to vary), full data (the reference), then per
    budget and seed: the baselines (random first), then each selector."""
    cells = [Cell("base", None, cfg.seeds[0])] + [Cell("full", None, s) for s in cfg.seeds]
    for b in cfg.budgets:
        for s in cfg.seeds:
            cells += [Cell(choice.name, b, s) for choice in ordered_by_parent(cfg.trained_choices())]
    return cells


# ------------------------------------------------------------------------------------------ data


@dataclass
class BenchData:
    """The three sets as read, their paths, and the eval groups (one per eval example)."""

    pool: Any
    eval: Any
    reference: Any | None
    pool_path: Path
    reference_path: Path | None
    groups: list[str]
    grouping: str
    group_key: str | None = None  # the record field or rule of the groups (None: one group)


def load_data(cfg: BenchConfig, out: Path) -> BenchData:
    """Write (or find) the three sets, read them, refuse leakage (exit 2) and group the eval set."""
    paths = prepare_data(cfg.data, out)
    pool, held_out = read_pool(paths.pool), read_pool(paths.eval)
    reference = read_pool(paths.reference) if paths.reference is not None else None
    check_leakage(pool, held_out, reference)
    try:
        groups, grouping = eval_groups(held_out.examples, cfg.data.group_by)
    except ValueError as e:
        raise ConfigError("data.group_by", str(e)) from None
    return BenchData(pool, held_out, reference, paths.pool, paths.reference, groups, grouping,
                     group_key(held_out.examples, cfg.data.group_by))


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


def run_bench(cfg: BenchConfig, *, overwrite: bool = False,
              echo: Callable[[str], None] | None = None) -> Path:
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
    say = _echo(echo)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(cfg, "proxysel bench: the resolved config"))
    t_start = time.perf_counter()

    data = load_data(cfg, out)
    pool, held_out = data.pool, data.eval
    proxy_spec, target_spec = prepare_models(cfg, out, pool)
    ref = f", reference {len(data.reference.examples)}" if data.reference is not None else ""
    say(f"bench {out}: pool {len(pool.examples)}{ref}, eval {len(held_out.examples)} "
        f"({len(set(data.groups))} group(s): {data.grouping}), proxy {proxy_spec}, target {target_spec}")

    # 1. proxy signals, once (train-proxy resumes; a finished stage recomputes nothing)
    t0 = time.perf_counter()
    proxy_run = out / "proxy"
    runtime = RuntimeConfig(device=cfg.device)
    train_proxy(data.pool_path, out=proxy_run, config=cfg.proxy.train_proxy_config(proxy_spec),
                read=ReadConfig(), runtime=runtime, overwrite=overwrite)
    add_epoch_columns(proxy_run)
    score_proxy_signals(cfg, data, proxy_spec, proxy_run, runtime, overwrite=overwrite)
    say(f"proxy signals ready in {time.perf_counter() - t0:.0f}s ({proxy_run})")

    # 2. every selection: the filters of every seed, then every cell's (a selector's `from` is that
    # selector's selection of the same seed, at the filter's own budget or else the same budget)
    choices = {c.name: c for c in cfg.choices()}
    cells = plan_cells(cfg)
    filters = [Cell(c.name, c.budget, s) for s in cfg.seeds for c in ordered_by_parent(cfg.choices())
               if getattr(c, "budget", None) is not None]
    for cell in [*filters, *(c for c in cells if c.budget is not None)]:
        c = choices[cell.selector]
        parent = None
        if c.parent is not None:
            parent_budget = getattr(choices[c.parent], "budget", None)
            parent = Cell(c.parent, parent_budget if parent_budget is not None else cell.budget,
                          cell.seed).name
        select = SelectConfig(method=c.method, options=c.params(), parent=parent, budget=cell.budget,
                              seed=cell.seed, name=cell.name)
        select_run(proxy_run, select, overwrite=overwrite)

    # 3-5. train and evaluate the target on every subset (cached per cell); the tables are rewritten
    # after every cell so that a bench stopped by a time limit still leaves them
    context = bench_context(cfg, out, data, proxy_spec, choices)
    by_id = {e.id: e for e in pool.examples}
    labels = pool_labels(pool, [r for r in (cfg.data.group_by, cfg.data.category) if r in GROUP_RULES])
    subsets = {c.name: None if c.budget is None else RunFolder(proxy_run).selection_ids(c.name)
               for c in cells}
    for cell in cells:  # a changed recipe is refused before any cell is trained or a table rewritten
        plan = plan_cell(cfg, cell, target_spec, data, subsets[cell.name], by_id)
        cached_result(out, cell, plan.fingerprint, overwrite=overwrite)
    rows = []
    for k, cell in enumerate(cells, 1):
        row = run_cell(cfg, out, cell, target_spec, data, subsets[cell.name], by_id, labels,
                       overwrite=overwrite, prefix=f"[{k}/{len(cells)}]", say=say)
        rows.append(row)
        # After the last cell, with neither win rate nor transfer, the final write follows at once
        if k < len(cells) or cfg.transfer.enabled or cfg.winrate.enabled:
            write_outputs(cfg, out, rows, None, pool, pending=len(cells) - k, context=context)

    # 6. win rate against full data (opt-in), transfer check, tables and plot
    if cfg.winrate.enabled:
        judged = winrate.run_winrate(cfg, out, rows, held_out, say=say)
        for i, r in enumerate(rows):
            if r["cell"] in judged:  # copies: the cells' result.json files stay as they are
                rows[i] = {**r, "winrate": judged[r["cell"]],
                           "metrics": {**r["metrics"], "win_rate": judged[r["cell"]]["win_rate"]}}
    transfer = run_transfer(cfg, out, data.pool_path, target_spec, overwrite=overwrite, say=say) \
        if cfg.transfer.enabled else None
    write_outputs(cfg, out, rows, transfer, pool, context=context)
    say(f"bench done in {time.perf_counter() - t_start:.0f}s: {out / 'results.md'}, {out / 'plot.png'}")
    return out


def score_signals_needed(cfg: BenchConfig) -> list[str]:
    """The ``score`` signals the selectors and baselines read (the signal registry says which signal
    writes a column), leaving out columns the proxy's train-proxy run writes anyway (``longest``'s
    ``n_response_tokens``, which the ``loss`` signal writes too)."""
    from_train_proxy = {col for n in available_signals("train-proxy") if get_signal(n).provided_by(cfg.proxy)
                        for col in get_signal(n).columns}
    needed: list[str] = []
    for choice in cfg.choices():
        for col in choice.selector().reads():
            if col in from_train_proxy:
                continue
            producer = producer_of(col)
            if producer is not None and producer.command == "score":
                needed += [*producer.requires, producer.name]
    return [n for n in dict.fromkeys(needed) if get_signal(n).command == "score"]


def signal_model(cfg: BenchConfig, proxy_spec: str, proxy_run: Path) -> str:
    """The model the score signals run: the proxy as given, or with ``signals_from: trained`` its
    weights after its run (train-proxy --keep-checkpoints), named by path."""
    if cfg.signals_from != "trained":
        return proxy_spec
    folder = RunFolder(proxy_run)
    entry = folder.manifest["stages"]["train-proxy"]
    return str(folder.recorded_path(entry["final_checkpoint"], "the proxy's final weights"))


def score_proxy_signals(cfg: BenchConfig, data: BenchData, proxy_spec: str, proxy_run: Path,
                        runtime: RuntimeConfig, *, overwrite: bool) -> None:
    """Compute the score signals the selections read with the proxy: first those that need no
    reference set, then (against ``data.reference``) those that do, so that a change of the
    reference set recomputes only the latter. The reference set is recorded in the proxy run for
    every reference-aware selector."""
    signals = score_signals_needed(cfg)
    p = cfg.proxy
    model = signal_model(cfg, proxy_spec, proxy_run)
    # signals that embed the reference too when a selector reads their reference vectors
    # (cluster_by: reference reads embedding_reference); their pool stage runs in the first pass
    ref_vectors = {s.name for c in cfg.choices() if needs_reference(c) for col in c.selector().reads()
                   if (s := producer_of(col)) is not None and s.reference_vectors}
    for with_ref in (False, True):
        names = tuple(n for n in signals if get_signal(n).needs_reference == with_ref
                      or (with_ref and n in ref_vectors))
        if names:
            config = ScoreConfig(signals=names, model=model, embedder=cfg.embedder,
                                 max_length=p.max_length, template=p.template, dtype=p.dtype,
                                 batch_tokens=p.batch_tokens)
            score(data.pool_path, out=proxy_run, config=config, read=ReadConfig(), runtime=runtime,
                  reference=data.reference_path if with_ref else None, overwrite=overwrite)
    if data.reference is not None and any(needs_reference(c) for c in cfg.choices()):
        with Run.open(proxy_run, create=False) as run:
            record_reference(run, data.reference_path, data.reference, ReadConfig())


def proxy_params(out: Path, spec: str, kind: str = "causal_lm") -> int:
    """The ledger's N of the model ``spec`` (``ledger.model_params``): a causal LM, or with ``kind``
    ``embedder`` a sentence-transformers model. Cached in OUT/ledger-params.json by spec and
    revision (counting loads the model once)."""
    if kind == "embedder":
        _, revision = embedder_path(spec)
        key = f"embedder:{spec}@{revision}"
    else:
        _, revision = resolve_model_path(spec)
        key = f"{spec}@{revision}"
    path = out / "ledger-params.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    if key not in cache:
        model = load_embedder(spec) if kind == "embedder" \
            else load_causal_lm(spec, dtype="float32", device="cpu").model
        cache[key] = model_params(model)
        atomic_write_json(path, cache)
    return int(cache[key])


def chain_stages(choice: Any, choices: dict[str, Any], records: Mapping[str, Mapping[str, Any]] | None = None,
                 trained_model: str | None = None) -> list[str]:
    """The proxy stages a selection uses, with those of the selections it starts from (a chain pays
    for its filters' signals too). With ``trained_model`` (``signals_from: trained``), a stage whose
    ``records`` entry ran that model also needs ``train-proxy``, which is then charged too."""
    stages = choice_stages(choice)
    if choice.parent is not None:
        stages = list(dict.fromkeys([*chain_stages(choices[choice.parent], choices), *stages]))
    if trained_model is not None and records is not None and "train-proxy" not in stages and any(
            (records.get(s) or {}).get("model") == trained_model for s in stages):
        stages = ["train-proxy", *stages]
    return stages


def bench_context(cfg: BenchConfig, out: Path, data: BenchData, proxy_spec: str,
                  choices: dict[str, Any]) -> Context:
    """What the report needs beyond the cells: the eval groups and the ledger's inputs."""
    records = proxy_costs_from_run(out / "proxy")
    trained = signal_model(cfg, proxy_spec, out / "proxy") if cfg.signals_from == "trained" else None
    # N of every model whose tokens the ledger counts: the proxy, and with signals_from: trained
    # its checkpoint, which the score stages name by path (the same N, counted once per path)
    counted = {(r["model"], r.get("kind", "causal_lm")) for r in records.values()
               if r.get("model") is not None and (r.get("train_tokens") or r.get("forward_tokens"))}
    n_params = {m: proxy_params(out, m, kind) for m, kind in {(proxy_spec, "causal_lm"), *counted}}
    return Context(groups=data.groups, eval_ids=[e.id for e in data.eval.examples], grouping=data.grouping,
                   group_key=data.group_key, n_pool=len(data.pool.examples), n_eval=len(data.eval.examples),
                   n_reference=0 if data.reference is None else len(data.reference.examples),
                   stages={name: chain_stages(c, choices, records, trained) for name, c in choices.items()},
                   records=records,
                   n_params=n_params, n_boot=cfg.eval.n_boot,
                   level=cfg.eval.level)


def add_epoch_columns(run_dir: Path) -> list[str]:
    """Add ``ppl_<e>`` (P_e, e = 0..n), ``lp_<i>``, ``lp_app_<i>`` (i = 1..n), ``confidence`` and
    ``variability`` to the run's scores.

    ``train-proxy`` stores ``lp``/``lp_app`` for one epoch (``--lp-epoch``); a selector may read any
    column derived from ``ppl_epoch`` (``signals.lp.derived_column``, derived when it is read). The
    bench stores them too, so that report.html and ``explain`` show the values its selectors cut
    on. Returns the names added.
    """
    with Run.open(run_dir, create=False) as run:
        if "ppl_epoch" not in run.score_columns():
            return []
        ids, ppl = run.score_matrix("ppl_epoch")
        names = [f"ppl_{e}" for e in range(ppl.shape[1])]
        names += [f"{kind}_{i}" for i in range(1, ppl.shape[1]) for kind in ("lp", "lp_app")]
        names += CARTOGRAPHY_COLUMNS
        if all(c in run.score_columns() for c in names):
            return names  # already there (derived from the same stored ppl_epoch)
        cols = {"id": pa.array(ids, pa.string()),
                **{c: pa.array(derived_column(ppl, c), pa.float64()) for c in names}}
        run.merge_scores(pa.table(cols))
    return names


def pool_labels(pool: Any, rules: list[str]) -> dict[str, list[str | None]]:
    """field -> one value per pool example (None where the record lacks it), for ``GROUP_FIELDS``
    and the given rules of ``groups.GROUP_RULES`` (a rule's value is its group, e.g. ``code``)."""
    labels: dict[str, list[str | None]] = {}
    for f in GROUP_FIELDS:
        values = [str(e.record[f]) if isinstance(e.record, dict) and f in e.record else None
                  for e in pool.examples]
        if any(v is not None for v in values):
            labels[f] = values
    for rule in dict.fromkeys(rules):
        labels[rule] = [GROUP_RULES[rule](e) for e in pool.examples]
    return labels


def keep_rates(pool: Any, ids: list[str] | None, labels: dict[str, list[str | None]]
               ) -> dict[str, dict[str, dict[str, float]]]:
    """{field: {value: {"n": pool count, "kept": selected count, "rate": kept / n}}} for every field
    of ``labels`` (``pool_labels``)."""
    chosen = set(ids) if ids is not None else None
    out: dict[str, dict[str, dict[str, float]]] = {}
    for f, values in labels.items():
        counts: dict[str, list[int]] = {}
        for e, v in zip(pool.examples, values):
            if v is None:
                continue
            c = counts.setdefault(v, [0, 0])
            c[0] += 1
            c[1] += int(chosen is None or e.id in chosen)
        out[f] = {v: {"n": n, "kept": kept, "rate": kept / n} for v, (n, kept) in sorted(counts.items())}
    return out


def _regrouped(result: dict[str, Any], data: BenchData) -> dict[str, Any]:
    """A cached result with its group metrics recomputed from its per-example arrays for the current
    eval groups (``data.group_by`` may have changed; the arrays do not depend on it)."""
    arrays = example_arrays(result)
    if arrays is None or arrays.ids != [e.id for e in data.eval.examples]:
        return result
    return {**result, "metrics": {**result["metrics"], **example_metrics(arrays, data.groups)}}


@dataclass(frozen=True)
class CellPlan:
    """What a cell trains on and how, and the fingerprint its cached result must carry."""

    examples: list[Any]
    epochs: int
    exact: bool
    fingerprint: dict[str, Any]


def plan_cell(cfg: BenchConfig, cell: Cell, target_spec: str, data: BenchData, ids: list[str] | None,
              by_id: dict[str, Any]) -> CellPlan:
    pool = data.pool
    base = cell.selector == "base"
    examples = [] if base else pool.examples if ids is None else [by_id[i] for i in ids]
    eff = cfg.target.batch_size * cfg.target.grad_accum
    epochs = 0 if base else cfg.target.epochs
    if cfg.match == "steps" and ids is not None:
        epochs = matched_epochs(len(examples), len(pool.examples), eff, cfg.target.epochs)
    exact = cfg.eval.exact_match if cfg.eval.exact_match is not None else cfg.data.exact_answers
    _, revision = resolve_model_path(target_spec)
    # the untrained target depends on no training setting, only on how the eval set is rendered
    recipe = {k: getattr(cfg.target, k) for k in ("max_length", "template")} if base \
        else bench_config_dict(cfg.target)
    # the bootstrap's settings change the verdicts, not the cell
    evaluation = {k: v for k, v in bench_config_dict(cfg.eval).items() if k not in ("n_boot", "level")}
    fingerprint = {"target": target_spec, "revision": revision, "recipe": recipe,
                   "epochs": epochs, "seed": None if base else cell.seed,
                   "train_ids": content_hash([e.id for e in examples]),
                   "eval_data": data.eval.fingerprint, "exact_match": exact,
                   "eval": evaluation, "device": cfg.device}
    return CellPlan(examples, epochs, exact, fingerprint)


def same_cell(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two cell fingerprints describe the same training. A local target folder (a bench's
    own scratch model under models/, or any model folder) is identified by its revision, a hash of
    its files, so its path is left out of the comparison: a bench folder that was moved or copied
    keeps its trained cells. A hub id has no such hash ("hub") and is compared by name."""
    def portable(fp: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in fp.items() if k != "target" or fp.get("revision") == "hub"}
    return portable(old) == portable(new)


def cached_result(out: Path, cell: Cell, fingerprint: dict[str, Any], *,
                  overwrite: bool) -> dict[str, Any] | None:
    """The cell's stored result when its fingerprint matches, else None; a result trained with other
    settings is refused (RunConflictError, naming what changed) unless ``overwrite``."""
    path = out / "cells" / cell.name / "result.json"
    if not path.exists():
        return None
    old = json.loads(path.read_text())
    if same_cell(old.get("fingerprint", {}), fingerprint):
        return old
    if not overwrite:
        diff = "; ".join(fingerprint_diff(old.get("fingerprint", {}), fingerprint)[:4])
        raise RunConflictError(f"cell {cell.name} in {out} was trained with other settings ({diff}); "
                               "use another --out or pass --overwrite")
    return None


def run_cell(cfg: BenchConfig, out: Path, cell: Cell, target_spec: str, data: BenchData,
             ids: list[str] | None, by_id: dict[str, Any], labels: dict[str, list[str | None]], *,
             overwrite: bool, prefix: str, say: Callable[[str], None]) -> dict[str, Any]:
    """Train + evaluate one cell, or read its cached result. Returns the result dict."""
    pool, held_out = data.pool, data.eval
    base = cell.selector == "base"
    plan = plan_cell(cfg, cell, target_spec, data, ids, by_id)
    examples, epochs, exact, fingerprint = plan.examples, plan.epochs, plan.exact, plan.fingerprint
    folder = out / "cells" / cell.name
    result_path = folder / "result.json"
    # the win rate needs every trained target's answers to the first winrate.n eval prompts
    answers_key = winrate.answers_key(cfg.winrate) if cfg.winrate.enabled and not base else None
    cached = None
    old = cached_result(out, cell, fingerprint, overwrite=overwrite)
    if old is not None and old.get("per_example") is None:
        # written before the per-example arrays were kept: the verdicts need them, and only a
        # trained model can give them, so the cell is trained again with the same settings
        say(f"{prefix} {cell.name}: its result has no per-example arrays; training it again")
        old = None
    if old is not None:
        if answers_key is None or (old.get("answers") or {}).get("key") == answers_key:
            old = _regrouped(old, data)
            say(f"{prefix} {cell.name}: cached (held-out loss {old['metrics']['eval_loss']:.4f})")
            return old
        cached = old  # trained before the win rate was asked for: train again, only to answer
    if base:
        say(f"{prefix} base: the target before training")
        trained = untrained_target(target_spec, cfg.target, device=cfg.device)
    else:
        again = " again, only to answer the win-rate prompts (its metrics are kept)" if cached else ""
        say(f"{prefix} {cell.name}: training{again} on {len(examples)} examples for {epochs} epoch(s)")
        trained = train_target(target_spec, cfg.target, examples, epochs=epochs, seed=cell.seed,
                               state_dir=folder / "state", device=cfg.device,
                               batch_tokens=cfg.eval.batch_tokens)
    if cached is None:
        e = cfg.eval
        metrics, arrays = evaluate_target(trained, held_out.examples, exact_match=exact,
                                          max_new_tokens=e.max_new_tokens, batch_size=e.batch_size,
                                          batch_tokens=e.batch_tokens, groups=data.groups)
        result = {"cell": cell.name, "selector": cell.selector, "budget": cell.budget, "seed": cell.seed,
                  "fingerprint": fingerprint, "n_train": trained.n_train, "n_selected": len(examples),
                  "epochs": epochs, "steps": trained.steps, "train_seconds": round(trained.seconds, 2),
                  "train_loss_last": trained.train_loss_last, "metrics": metrics,
                  "n_params": trained.n_params, "tokens_trained": trained.tokens_trained,
                  "train_flops": train_flops(trained.n_params, trained.tokens_trained, lora=cfg.target.lora),
                  "keep_rates": {} if base else keep_rates(pool, ids, labels),
                  "per_example": example_record(arrays)}
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
    em = f", exact match {metrics['exact_match']:.1%}" if metrics.get("exact_match") is not None else ""
    say(f"{prefix} {cell.name}: {trained.steps} steps in {trained.seconds:.0f}s -> held-out loss "
        f"{metrics['eval_loss']:.4f}{em}")
    return result


def run_transfer(cfg: BenchConfig, out: Path, pool_path: Path, target_spec: str, *, overwrite: bool,
                 say: Callable[[str], None]) -> dict[str, Any]:
    """Train-proxy with the target model on the pool; Spearman/overlap of its signals with the proxy's."""
    t = cfg.target
    run = out / "target-signals"
    t0 = time.perf_counter()
    say(f"transfer: train-proxy with the target ({cfg.transfer.epochs} epoch(s)) into {run}")
    recipe = {k: getattr(t, k) for k in ("lr", "batch_size", "grad_accum", "warmup_ratio", "weight_decay",
                                         "max_grad_norm", "dtype", "lora", "lora_r", "lora_alpha",
                                         "max_length", "template")}
    checkpoints = cfg.proxy.n_checkpoints if cfg.proxy.n_checkpoints >= 2 else 0
    config = dataclasses.replace(cfg.proxy.train_proxy_config(target_spec), epochs=cfg.transfer.epochs,
                                 lp_epoch=1, checkpoints=checkpoints, **recipe)
    train_proxy(pool_path, out=run, config=config, read=ReadConfig(),
                runtime=RuntimeConfig(device=cfg.device), overwrite=overwrite)
    signals = ["lp_app"] + (["lp"] if cfg.transfer.epochs >= 2 and cfg.proxy.epochs >= 2 else [])
    res = {s: compare_runs(out / "proxy", run, signal=s) for s in signals}
    say("transfer: " + ", ".join(f"{s} Spearman {r['spearman']:+.3f}" for s, r in res.items())
        + f" ({time.perf_counter() - t0:.0f}s)")
    return res
