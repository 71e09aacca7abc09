"""The Python API. Each function is one CLI command and takes that command's options as keyword
arguments, with the names, defaults and checks of their config sections (``proxysel.options``,
``signals.config.ScoreConfig``, ``selectors.config.SelectConfig``), or the section objects
themselves; the CLI modules only parse arguments and call these.

    >>> import proxysel
    >>> proxysel.score("pool.jsonl", out="runs/r1", signals=["loss"], model="smollm2-135m")

A bad value raises ``ConfigError`` (exit code 2 on the command line) naming the keyword:
``max_length must be >= 2, got 1``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from proxysel.benchmarking.config import BenchConfig, bench_config_dict, load_bench_config
from proxysel.benchmarking.presets import PRESETS
from proxysel.benchmarking.runner import run_bench
from proxysel.config import (
    DataConfig,
    ReportConfig,
    RunConfig,
    ScoreConfig,
    SelectConfig,
    TrainProxyConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)
from proxysel.data import read_pool
from proxysel.errors import UsageError
from proxysel.models.loader import cpu_bf16_native
from proxysel.options import DEFAULT_PROXY, ReadConfig, RuntimeConfig, from_kwargs
from proxysel.pipeline import check_overrides, describe, run_pipeline
from proxysel.reporting import explain as _explain
from proxysel.reporting import write_report
from proxysel.stages import compare as _compare
from proxysel.stages import score as _score
from proxysel.stages import select as _select
from proxysel.stages import train_proxy as _train_proxy
from proxysel.store import RunFolder
from proxysel.store.verify import VerifyReport, repair_run, verify_run

__all__ = ["bench", "compare", "demo", "demo_config", "explain", "report", "run", "score", "select",
           "train_proxy", "verify"]


def _sections(config: Any, cls: type, fields: dict[str, Any], others: Sequence[type], what: str) -> list[Any]:
    """The command's sections from a config object of type ``cls`` or from keyword ``fields``."""
    if config is not None:
        if not isinstance(config, cls):
            raise UsageError(f"{what}: config must be a {cls.__name__}, got {type(config).__name__}")
        return [config, *from_kwargs(others, fields, what=what)]
    return from_kwargs([cls, *others], fields, what=what)


def score(data: str | Path, *, out: str | Path, config: ScoreConfig | None = None,
          reference: str | Path | None = None, overwrite: bool = False, **fields: Any) -> Path:
    """Score every example of ``data`` and store the signals in the run directory ``out``.

    fields: the options of ``proxysel score`` (``ScoreConfig``: ``signals``, ``model``, ``judge``,
    ``embedder``, ``max_length``, ``dtype``, ``template``, ``batch_tokens``, ``density``, ``near_dup``,
    ``lexical``; how the pool is read, ``ReadConfig``: ``format``, ``columns``, ``limit``,
    ``on_bad_record``, ``dedupe``, ``max_record_bytes``; where it runs, ``RuntimeConfig``: ``device``,
    ``shard_size``, ``backend``, ``ray_address``, ...), or ``config=ScoreConfig(...)`` for the first group.

    signals: ``loss`` (mean response-token loss in nats, plus ``ppl``, ``n_tokens``,
    ``n_response_tokens``, ``truncated``), ``ifd``, ``ask_llm`` (P(yes) of ``judge``), ``embedding``
    (vectors into embeddings.parquet), ``density`` (over the stored embeddings), ``near_dup``
    (near-duplicate groups, no model), ``lexical`` (IBM Model 1 translation scores of each answer given
    its prompt, over the stored embeddings' clusters; no model), and the reference-aware signals,
    which need ``reference`` (a file read like ``data``).
    Work is split into shards of ``shard_size`` examples in input order; rerunning the same
    command skips finished shards. Returns the run directory.
    """
    cfg, read, runtime = _sections(config, ScoreConfig, fields, (ReadConfig, RuntimeConfig), "proxysel.score")
    return _score.score(data, out=out, config=cfg, read=read, runtime=runtime, reference=reference,
                        overwrite=overwrite)


def train_proxy(data: str | Path, *, out: str | Path, config: TrainProxyConfig | None = None,
                overwrite: bool = False, **fields: Any) -> Path:
    """Fine-tune the proxy on ``data`` and store what it learns in the run directory ``out``.

    fields: the options of ``proxysel train-proxy`` (``TrainProxyConfig``: ``model``, ``epochs``,
    ``checkpoints``, ``lp_epoch``, ``lr``, ``batch_size``, ``grad_accum``, ``warmup_ratio``,
    ``weight_decay``, ``max_grad_norm``, ``seed``, ``lora``, ``online``, ``keep_checkpoints``,
    ``max_length``, ``dtype``, ``template``, ``batch_tokens``), how the pool is read and where it
    runs, as for ``score``; or ``config=TrainProxyConfig(...)``.

    Columns written to scores.parquet (NaN where truncation left no response token):
    ``ppl_epoch`` (P_0..P_n), ``lp`` and ``lp_app`` (of ``lp_epoch``), ``trajectory`` (the loss at
    ``checkpoints`` evenly spaced steps, S2L), ``n_tokens``, ``n_response_tokens``, ``truncated``.
    The recipe is the official LP code's (``options.TrainRecipe``). Training state is saved at every
    scored step; rerunning the same command resumes. Under ``torchrun`` or ``accelerate launch`` it
    trains data-parallel (docs/scale.md). Returns the run directory.

    >>> proxysel.train_proxy("pool.jsonl", out="runs/r1", epochs=1)  # lp_app only  # doctest: +SKIP
    """
    cfg, read, runtime = _sections(config, TrainProxyConfig, fields, (ReadConfig, RuntimeConfig),
                                   "proxysel.train_proxy")
    return _train_proxy.train_proxy(data, out=out, config=cfg, read=read, runtime=runtime,
                                    overwrite=overwrite)


def select(run_dir: str | Path, *, method: str | None = None, budget: str | float | int | None = None,
           config: SelectConfig | None = None, data: str | Path | None = None,
           reference: str | Path | None = None, overwrite: bool = False, **fields: Any) -> Path:
    """Select a subset from ``run_dir``'s scores; returns RUN/selections/NAME.

    method: a registered selector (``random``, ``top``, ``lp``, ``lp_app``, ``s2l``, ...).
    budget: a fraction in (0, 1] or a count. fields: ``seed``, ``name``, ``parent`` (start from another
    selection's kept set) and the selector's own parameters (``clusters``, ``signal``, ``order``, ...;
    see ``proxysel.selectors.get_selector(method).Params``). The same run, parameters and seed give
    the same selection.

    >>> proxysel.select("runs/r1", method="lp_app", budget=0.1, seed=0)  # doctest: +SKIP
    """
    if config is None:
        own = {k: fields.pop(k) for k in ("seed", "name", "parent") if k in fields}
        raw = {"method": method, "budget": budget, **own, "options": fields}
        config = from_kwargs([SelectConfig], {k: v for k, v in raw.items() if v is not None or k == "method"},
                             what="proxysel.select")[0]
    return _select.select_run(run_dir, config, data=data, reference=reference, overwrite=overwrite)


def run(config: str | Path | RunConfig, overrides: Sequence[str] = (), *, overwrite: bool = False) -> Path:
    """Run the whole pipeline of a config file (or a ``proxysel.config.RunConfig``); returns the run folder.

    config:    a YAML file (read with ``yaml.safe_load``; see ``configs/`` and docs/cli.md) or a
               RunConfig built in code.
    overrides: dotted ``field=value`` strings applied on top, typed by the field they name
               (``["select.budget=0.2", "train_proxy.model=gemma3-270m"]``).
    overwrite: also replace stages that other commands left in the folder with other parameters.

    Steps: train-proxy, score, every selection, report (``proxysel.pipeline``). Rerunning resumes;
    a changed section recomputes that step and the steps after it, nothing else. The resolved
    config is saved as ``RUN/config.yaml`` and in the manifest. Bad configs raise ConfigError
    (exit code 2) naming the dotted field.

    >>> proxysel.run("configs/lp_app.yaml", ["select.budget=0.2"])  # doctest: +SKIP
    PosixPath('runs/lp_app')
    """
    overrides = check_overrides(overrides)
    if isinstance(config, RunConfig):
        cfg = config_from_dict(apply_overrides(config_to_dict(config), overrides)) if overrides else config
        source = None
    else:
        cfg, source = load_config(config, overrides), str(config)
    return run_pipeline(cfg, source=source, overwrite=overwrite).out


def report(run_dir: str | Path, *, selection: str | None = None, data: str | Path | None = None,
           read_data: bool = True) -> Path:
    """Write ``RUN/report.html``, one self-contained page about the run, and return its path.

    selection: the selection the page colours by (default: the most recently written).
    data:      where to read the input records (default: the manifest's data path); they give the
               keep rates per source and format and the text previews.
    read_data: False skips reading the input records.
    """
    return write_report(run_dir, selection=selection, data=data, read_data=read_data)


def explain(run_dir: str | Path, example_id: str, selection: str | None = None) -> str:
    """Every signal of example ``example_id``, and for every selection (or the named one) whether it
    was kept, its rank, cluster and the selector's reason (a chain's step too); as printable text.

    Raises UsageError (exit code 2) for an id the run does not know.
    """
    return _explain(run_dir, example_id, selection=selection)


def verify(run_dir: str | Path, *, repair: bool = False) -> VerifyReport:
    """Check every shard, marker, scores/vectors file and selection of ``run_dir`` against its
    recorded sha256, changing nothing; returns a ``store.verify.VerifyReport`` (``.clean``,
    ``.damaged``: path, problem and repair of each damaged file; ``.format()``: as text).

    repair: first rebuild a damaged scores.parquet or vector file from the stages (the report then
    lists what is still damaged: shards, which only their command can recompute).

    >>> proxysel.verify("runs/r1").clean  # doctest: +SKIP
    True
    """
    if repair:
        repair_run(run_dir)
    return verify_run(run_dir)


def compare(run_a: str | Path, run_b: str | Path, *, signal: str = "loss", signal_b: str | None = None,
            order: str = "low") -> dict[str, Any]:
    """Spearman/Kendall of ``signal`` between two runs and the overlap of their top 1/5/10/30%."""
    return _compare.compare_runs(run_a, run_b, signal=signal, signal_b=signal_b, order=order)


def bench(config_or_preset: str | Path | dict[str, Any] | BenchConfig, *, out: str | Path | None = None,
          dotted: Sequence[str] = (), preset: str | None = None, overwrite: bool = False,
          echo: Any = None, **overrides: Any) -> Path:
    """Train a target on every (selector, budget, seed) subset and write the table; returns the bench folder.

    config_or_preset: a preset name (``tiny``, ``synthetic``, ``skewed``, ``cpu``, ``cpu-targeted``,
    ``gpu``), a YAML file, a dict in the same layout, or a ``benchmarking.config.BenchConfig``.
    ``preset`` merges a file or dict over that preset. ``dotted``: text overrides
    (``["target.epochs=5"]``); ``overrides``: field values (``seeds=[0]``, ``match="steps"``,
    ``target={"epochs": 5}``, a mapping merged into its section). Outputs: results.csv, results.md,
    keep_rates.csv, plot.png, ... (docs/bench.md). Rerunning resumes; finished cells are not retrained.
    Bad configs raise ConfigError (exit code 2) naming the dotted field.

    >>> proxysel.bench("tiny", out="runs/bench-tiny", seeds=[0])  # doctest: +SKIP
    PosixPath('runs/bench-tiny')
    """
    fields = {k: v for k, v in overrides.items() if v is not None}
    if out is not None:
        fields["out"] = str(out)
    if isinstance(config_or_preset, BenchConfig):
        cfg = load_bench_config(bench_config_dict(config_or_preset), overrides=dotted, fields=fields)
    elif (isinstance(config_or_preset, str) and config_or_preset in PRESETS
          and not Path(config_or_preset).exists()):
        cfg = load_bench_config(preset=config_or_preset, overrides=dotted, fields=fields)
    else:
        cfg = load_bench_config(config_or_preset, preset=preset, overrides=dotted, fields=fields)
    return run_bench(cfg, overwrite=overwrite, echo=echo)


# ------------------------------------------------------------------------------------------ demo

#: The demo's settings, chosen to finish in under 15 minutes on 2 CPU cores (README, docs/cli.md).
DEMO_MAX_LENGTH = 256
DEMO_BUDGET = 0.3


def demo_config(*, limit: int = 300, out: str | Path = "runs/demo", model: str = DEFAULT_PROXY,
                dtype: str = "auto", max_length: int = DEMO_MAX_LENGTH) -> RunConfig:
    """The RunConfig of ``proxysel demo``: LP_app of ``model`` (one epoch) on ``limit`` real
    ShareGPT conversations, MiniLM embeddings for the clusters, a 30% ``lp_app`` selection, the report.

    ``dtype="auto"`` is bfloat16 autocast where the CPU has native bf16, else float32. The clusters
    scale with the pool (``max(2, round(limit / 30))``: 10 for 300), as 100 clusters would leave
    three examples per cluster. The recipe departs from the paper's (lr 2e-5, effective batch 32)
    for the small pool: lr 1e-4 and effective batch 8 (4 x 2), so that one epoch of ~28 steps
    moves the proxy enough to rank by; the paper's recipe takes 7 steps here, the first at lr 0.
    """
    if dtype == "auto":
        dtype = "bfloat16" if cpu_bf16_native() else "float32"
    return RunConfig(
        out=str(out), data=DataConfig(demo=limit),
        train_proxy=TrainProxyConfig(model=model, epochs=1, checkpoints=0, max_length=max_length, dtype=dtype,
                                     lr=1e-4, batch_size=4, grad_accum=2),
        score=ScoreConfig(signals=("embedding",)),
        select=(SelectConfig(method="lp_app", budget=DEMO_BUDGET, name="lp_app-30",
                             options={"clusters": max(2, round(limit / 30))}),),
        report=ReportConfig())


def _preview(text: str, width: int = 72) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def demo(*, limit: int = 300, out: str | Path = "runs/demo", model: str = DEFAULT_PROXY,
         dtype: str = "auto", max_length: int = DEMO_MAX_LENGTH, show: int = 5) -> dict[str, Any]:
    """The embedded default, end to end and offline: ``proxysel run`` on ``demo_config(...)``.

    Returns {"run": run folder, "data": the input sample, "selection": the subset file,
    "report": report.html, "summary": printable text with the hardest and easiest ``show`` examples}.
    """
    if limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    t0 = time.perf_counter()
    cfg = demo_config(limit=limit, out=out, model=model, dtype=dtype, max_length=max_length)
    result = run_pipeline(cfg, source="proxysel demo")
    out = result.out
    folder = RunFolder(out)
    selection = folder.read_selection("lp_app-30")
    scores = folder.read_scores().to_pydict()
    kept = set(selection.selected_ids)
    by_id = {e.id: e for e in read_pool(result.data).examples}
    ids = scores["id"]
    lpa = np.array([np.nan if v is None else v for v in scores["lp_app"]], dtype=float)
    ok = np.flatnonzero(np.isfinite(lpa))
    order = ok[np.argsort(lpa[ok], kind="stable")]

    def row(i: int) -> str:
        e = by_id[ids[i]]
        user = next((m.content for m in e.messages if m.role == "user"), "")
        p0, p1 = scores["ppl_epoch"][i][:2]
        return (f"  {lpa[i]:+.4f}  {p0:7.2f} -> {p1:7.2f}  {'kept   ' if ids[i] in kept else 'dropped'}  "
                f"{ids[i]:<10} {_preview(user, 56)}")

    n_trunc = int(sum(bool(t) for t in scores["truncated"]))
    tp = cfg.train_proxy
    lines = [f"proxysel demo: LP_app of {model} ({tp.dtype}, max_length {tp.max_length}, "
             f"1 epoch) on {len(ids)} real ShareGPT conversations; {selection.meta['n_selected']} kept "
             f"({DEMO_BUDGET:.0%}) in {cfg.select[0].clusters} clusters, {time.perf_counter() - t0:.0f}s", ""]
    if tp.max_length == DEMO_MAX_LENGTH:
        lines += [f"max_length {DEMO_MAX_LENGTH}, one epoch and bf16 where the CPU has it keep the demo "
                  "under 15 minutes on 2 cores; --max-length 512 reads more of each conversation in "
                  "roughly 1.7x the time."]
    if n_trunc:
        lines += [f"{n_trunc} conversations have prompts longer than {tp.max_length} tokens: their "
                  "response is cut away, so they are marked truncated and left out."]
    lines += [""]
    lines += ["hardest (lowest LP_app: the proxy learned least from one epoch; kept first in each cluster):",
              "   LP_app    P_0  ->   P_1     outcome  id         first user turn"]
    lines += [row(i) for i in order[:show]]
    lines += ["", "easiest (highest LP_app: learned most):"]
    lines += [row(i) for i in order[::-1][:show]]
    lines += ["", describe(out), f"input sample: {result.data}",
              f"rerun or change it: proxysel run {folder.config_path} "
              "select.budget=0.2 select.name=lp_app-20",
              f"why was an example kept? proxysel explain {out} ID"]
    return {"run": out, "data": result.data, "selection": selection.file, "report": result.report,
            "summary": "\n".join(lines)}
