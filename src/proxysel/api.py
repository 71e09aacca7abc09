"""The Python API. Each function is one CLI command; the CLI modules only parse arguments.

    >>> import proxysel
    >>> proxysel.score("pool.jsonl", out="runs/r1", signals=["loss"], model="smollm2-135m")
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

from proxysel.errors import UsageError

log = logging.getLogger(__name__)

SIGNALS = ("loss", "ifd", "ask_llm", "embedding", "density")
#: signal -> module that registers it
_SIGNAL_MODULES = {"loss": "loss", "ifd": "ifd", "ask_llm": "ask_llm", "embedding": "embedding",
                   "density": "density_stage"}


def _signals(signals: str | Sequence[str]) -> list[str]:
    out = [s.strip() for s in (signals.split(",") if isinstance(signals, str) else signals) if s.strip()]
    if not out:
        raise UsageError("--signals: give at least one signal")
    bad = [s for s in out if s not in SIGNALS]
    if bad:
        raise UsageError(f"--signals: unknown signal(s) {bad}; choose from {list(SIGNALS)}")
    # density reads the embeddings, so it always runs after them.
    return sorted(dict.fromkeys(out), key=SIGNALS.index)


def _record_data(run: Any, data: str | Path, pool: Any, **read_options: Any) -> None:
    """Record in the manifest what was read and how, so ``select`` can read the same records again."""
    block = {"path": str(Path(data).resolve()), "fingerprint": pool.fingerprint, "n_examples": len(pool.examples),
             "files": pool.paths, "read_options": read_options}
    old = run.manifest.get("data")
    if old and old.get("fingerprint") not in (None, pool.fingerprint) and not run.overwrite:
        raise UsageError(f"run folder {run.path} holds results for other data (fingerprint "
                         f"{str(old.get('fingerprint'))[:12]}, now {pool.fingerprint[:12]}); use a new --out "
                         "or pass --overwrite")
    run.update_manifest(data=block, skipped_records=[s.to_dict() for s in pool.skipped])


def _read_options(*, max_record_bytes: int | None = None, **options: Any) -> dict[str, Any]:
    """The keyword arguments of ``read_pool``, as recorded in the manifest (``select`` reads the pool
    again with them). ``max_record_bytes`` is recorded only when given, so runs made without it
    keep their manifest."""
    if max_record_bytes is not None:
        _positive("--max-record-bytes", max_record_bytes)
        options["max_record_bytes"] = max_record_bytes
    return options


def _positive(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got {value}")


def score(data: str | Path, *, out: str | Path, signals: str | Sequence[str] = ("loss",),
          model: str = "smollm2-135m", judge: str = "smollm2-135m", embedder: str = "minilm",
          max_length: int = 512, batch_tokens: int = 8192, dtype: str = "float32", template: str = "auto",
          limit: int | None = None, on_bad_record: str = "error", format: str | None = None,
          columns: dict[str, str] | None = None, dedupe: bool = False, shard_size: int = 256,
          overwrite: bool = False, trust_remote_code: bool = False, allow_pickle: bool = False,
          device: str | None = None, density: dict[str, Any] | None = None, backend: str = "local",
          ray_address: str | None = None, ray_actors: int | None = None,
          ray_cpus_per_actor: int | None = None, max_record_bytes: int | None = None) -> Path:
    """Score every example of ``data`` and store the signals in the run directory ``out``.

    signals (any of): ``loss`` (mean response-token loss in nats with ``model``, plus ``ppl``,
    ``n_tokens``, ``n_response_tokens``, ``truncated``), ``ifd`` (``ifd``, ``ifd_loss`` with
    ``model``), ``ask_llm`` (P(yes) of ``judge``), ``embedding`` (``embedder`` vectors into
    embeddings.parquet) and ``density`` (LSH kernel density over the stored embeddings).
    Work is split into shards of ``shard_size`` examples in input order; rerunning the same
    command skips finished shards. Returns the run directory.

    backend: ``local`` (this process) or ``ray``: loss, ifd, ask_llm and embedding then run as a
    Ray Data pipeline on the cluster at ``ray_address`` ("auto", "ray://head:10001"; default
    $RAY_ADDRESS or a new local cluster) with ``ray_actors`` actors (default one per GPU, else
    one per ``ray_cpus_per_actor`` CPUs). The results and the run directory are the same as
    with the local backend (docs/scale.md).

    max_record_bytes: records larger than this are bad records (default 16 MiB, see ``read_pool``).
    """
    import importlib

    from proxysel import backends

    from proxysel.data import read_pool
    from proxysel.signals.base import SIGNALS as REGISTRY
    from proxysel.signals.base import ScoreOptions
    from proxysel.store import Run

    sigs = _signals(signals)
    _positive("--max-length", max_length, 2)
    _positive("--batch-tokens", batch_tokens)
    _positive("--shard-size", shard_size)
    _positive("--limit", limit)
    opts = ScoreOptions(model=model, judge=judge, embedder=embedder, max_length=max_length,
                        batch_tokens=batch_tokens, dtype=dtype, template=template, shard_size=shard_size,
                        device=device, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
                        density=dict(density or {}), backend=backend, ray_address=ray_address,
                        ray_actors=ray_actors, ray_cpus_per_actor=ray_cpus_per_actor)
    opts.make_backend()  # unknown backend, misplaced Ray options or a missing ray: exit 2 before any work
    # All input is read and validated before any model work (bad input: exit 2, nothing written).
    read_options = _read_options(format=format, columns=columns, on_bad_record=on_bad_record, limit=limit,
                                 dedupe=dedupe, max_record_bytes=max_record_bytes)
    pool = read_pool(data, **read_options)
    if not pool.examples:
        raise UsageError(f"{data}: no usable examples")
    with Run.open(out, overwrite=overwrite) as run:
        _record_data(run, data, pool, **read_options)
        try:
            for sig in sigs:
                importlib.import_module(f"proxysel.signals.{_SIGNAL_MODULES[sig]}")
                REGISTRY[sig](run, pool, opts)
        finally:
            backends.shutdown()
    return Path(out)


def train_proxy(data: str | Path, *, out: str | Path, model: str = "smollm2-135m", epochs: int = 3,
                checkpoints: int | None = None, lp_epoch: int = 1, lr: float = 2e-5, batch_size: int = 4,
                grad_accum: int = 8, warmup_ratio: float = 0.03, weight_decay: float = 0.0,
                max_grad_norm: float = 1.0, max_length: int = 512, seed: int = 42, lora: bool = False,
                lora_r: int = 16, lora_alpha: int = 32, online: bool = False, keep_checkpoints: bool = False,
                dtype: str = "float32", template: str = "auto", batch_tokens: int = 8192,
                limit: int | None = None, on_bad_record: str = "error", format: str | None = None,
                columns: dict[str, str] | None = None, dedupe: bool = False, shard_size: int = 256,
                overwrite: bool = False, trust_remote_code: bool = False, allow_pickle: bool = False,
                device: str | None = None, max_record_bytes: int | None = None) -> Path:
    """Fine-tune the proxy ``model`` on ``data`` and store what it learns in the run directory ``out``.

    Columns written to scores.parquet (NaN where truncation left no response token):

    - ``ppl_epoch``: list of epochs+1 floats, P_0 (before training) .. P_n, each the response
      perplexity over the whole pool in eval mode after that epoch;
    - ``lp``, ``lp_app``: LP(lp_epoch) and LP_app(lp_epoch) from ``ppl_epoch`` (DESIGN.md 1);
    - ``trajectory``: the loss (nats) at ``checkpoints`` evenly spaced optimizer steps, step 0
      and the last step included (S2L); default 8, or 0 (none) with ``online``;
    - ``n_tokens``, ``n_response_tokens``, ``truncated``.

    Recipe (official LP code): AdamW, ``lr`` with cosine decay after ``warmup_ratio`` linear
    warmup, effective batch ``batch_size x grad_accum`` = 32, loss per token over the effective
    batch; ``dtype="bfloat16"`` is bf16 autocast over float32 weights. ``lora`` trains rank
    ``lora_r`` adapters on all linear layers (needs peft). ``online`` takes P_1..P_n from the
    training forward passes (no pass after each epoch: one epoch + one pass for lp_app); it ranks
    P_1 like the exact pass but its lp_app is biased by when an example was seen (see
    benchmarks/RESULTS.md): prefer the exact lp_app for selection.
    ``max_record_bytes``: larger records are bad records (default 16 MiB, see ``read_pool``).
    ``keep_checkpoints`` keeps the weights of every scored step as safetensors under
    ``out/stages/train-proxy/checkpoints/``. Training state is saved at every scored step;
    rerunning the same command resumes an interrupted run. Returns the run directory.

    Under ``torchrun`` or ``accelerate launch`` (``$WORLD_SIZE`` > 1) it trains data-parallel:
    each rank runs its share of the micro-batches of every effective batch (which stays
    ``batch_size x grad_accum`` in all) and of the scoring passes; rank 0 writes ``out``
    (``proxysel.dynamics.distributed``, docs/scale.md).

    >>> proxysel.train_proxy("pool.jsonl", out="runs/r1", epochs=1)  # lp_app only  # doctest: +SKIP
    """
    import contextlib

    from proxysel.data import read_pool
    from proxysel.dynamics.distributed import Dist
    from proxysel.dynamics.stage import run_train_proxy_stage
    from proxysel.dynamics.train import TrainConfig
    from proxysel.store import Run

    _positive("--max-length", max_length, 2)
    _positive("--shard-size", shard_size)
    _positive("--limit", limit)
    if checkpoints is None:
        checkpoints = 0 if online else 8
    config = TrainConfig(epochs=epochs, checkpoints=checkpoints, lr=lr, batch_size=batch_size,
                         grad_accum=grad_accum, warmup_ratio=warmup_ratio, weight_decay=weight_decay,
                         max_grad_norm=max_grad_norm, seed=seed, dtype=dtype, lora=lora, lora_r=lora_r,
                         lora_alpha=lora_alpha, online=online, batch_tokens=batch_tokens)
    if not 1 <= lp_epoch <= epochs:
        raise UsageError(f"--lp-epoch must be in [1, --epochs={epochs}], got {lp_epoch}")
    read_options = _read_options(format=format, columns=columns, on_bad_record=on_bad_record, limit=limit,
                                 dedupe=dedupe, max_record_bytes=max_record_bytes)
    pool = read_pool(data, **read_options)
    if not pool.examples:
        raise UsageError(f"{data}: no usable examples")
    dist = Dist.from_env(device)
    try:
        def open_run() -> Any:
            run = Run.open(out, overwrite=overwrite)
            try:
                _record_data(run, data, pool, **read_options)
            except BaseException:
                run.close()
                raise
            return run

        run = dist.on_main(open_run)  # rank 0 alone opens (and locks) the run folder
        with run if run is not None else contextlib.nullcontext():
            run_train_proxy_stage(run, pool, model=model, config=config, max_length=max_length,
                                  template=template, lp_epoch=lp_epoch, keep_checkpoints=keep_checkpoints,
                                  shard_size=shard_size, trust_remote_code=trust_remote_code,
                                  allow_pickle=allow_pickle, device=device, dist=dist)
    except BaseException:
        dist.close(ok=False)
        raise
    dist.close()
    return Path(out)


def run(config: str | Path | Any, overrides: Sequence[str] = (), *, overwrite: bool = False) -> Path:
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
    from proxysel.config import RunConfig, apply_overrides, config_from_dict, config_to_dict, load_config
    from proxysel.pipeline import check_overrides, run_pipeline

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

    >>> proxysel.report("runs/r1")  # doctest: +SKIP
    PosixPath('runs/r1/report.html')
    """
    from proxysel.reporting import write_report

    return write_report(run_dir, selection=selection, data=data, read_data=read_data)


def explain(run_dir: str | Path, example_id: str, selection: str | None = None) -> str:
    """Every signal of example ``example_id``, and for every selection (or the named one) whether it
    was kept, its rank, cluster and the selector's reason; as printable text.

    Raises UsageError (exit code 2) for an id the run does not know.
    """
    from proxysel.reporting import explain as _explain

    return _explain(run_dir, example_id, selection=selection)


def verify(run_dir: str | Path, *, repair: bool = False) -> Any:
    """Check every shard, marker, scores/embeddings file and selection of ``run_dir`` against its
    recorded sha256, changing nothing; returns a ``store.verify.VerifyReport`` (``.clean``,
    ``.damaged``: path, problem and repair of each damaged file; ``.format()``: as text).

    repair: first rebuild a damaged scores.parquet or embeddings.parquet from the stages (the
    report then lists what is still damaged: shards, which only their command can recompute).

    >>> proxysel.verify("runs/r1").clean  # doctest: +SKIP
    True
    """
    from proxysel.store.verify import repair_run, verify_run

    if repair:
        repair_run(run_dir)
    return verify_run(run_dir)


def _preview(text: str, width: int = 72) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


#: The demo's settings, chosen to finish in under 15 minutes on 2 CPU cores (README, docs/cli.md).
DEMO_MAX_LENGTH = 256
DEMO_BUDGET = 0.3


def _cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 / AMX): autocast then pays off."""
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # an old torch without the probe: be safe
        return False


def demo_config(*, limit: int = 300, out: str | Path = "runs/demo", model: str = "smollm2-135m",
                dtype: str = "auto", max_length: int = DEMO_MAX_LENGTH) -> Any:
    """The RunConfig of ``proxysel demo``: LP_app of ``model`` (one epoch) on ``limit`` real
    ShareGPT conversations, MiniLM embeddings for the clusters, a 30% ``lp_app`` selection, the report.

    ``dtype="auto"`` is bfloat16 autocast where the CPU has native bf16, else float32. The clusters
    scale with the pool (``max(2, round(limit / 30))``: 10 for 300), as 100 clusters would leave
    three examples per cluster. The recipe departs from the paper's (lr 2e-5, effective batch 32)
    for the small pool: lr 1e-4 and effective batch 8 (4 x 2), so that one epoch of ~28 steps
    moves the proxy enough to rank by; the paper's recipe takes 7 steps here, the first at lr 0.
    """
    from proxysel.config import (DataConfig, ReportConfig, RunConfig, ScoreConfig, SelectConfig,
                                 TrainProxyConfig)

    if dtype == "auto":
        dtype = "bfloat16" if _cpu_bf16() else "float32"
    return RunConfig(
        out=str(out), data=DataConfig(demo=limit),
        train_proxy=TrainProxyConfig(model=model, epochs=1, checkpoints=0, max_length=max_length, dtype=dtype,
                                     lr=1e-4, batch_size=4, grad_accum=2),
        score=ScoreConfig(signals=("embedding",)),
        select=(SelectConfig(method="lp_app", budget=DEMO_BUDGET, clusters=max(2, round(limit / 30)),
                             name="lp_app-30"),),
        report=ReportConfig())


def demo(*, limit: int = 300, out: str | Path = "runs/demo", model: str = "smollm2-135m",
         dtype: str = "auto", max_length: int = DEMO_MAX_LENGTH, show: int = 5) -> dict[str, Any]:
    """The embedded default, end to end and offline: ``proxysel run`` on ``demo_config(...)``.

    Returns {"run": run folder, "data": the input sample, "selection": the subset file,
    "report": report.html, "summary": printable text with the hardest and easiest ``show`` examples}.
    """
    import json

    import numpy as np
    import pyarrow.parquet as pq

    from proxysel.data import read_pool
    from proxysel.pipeline import describe, run_pipeline

    if limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    t0 = time.perf_counter()
    cfg = demo_config(limit=limit, out=out, model=model, dtype=dtype, max_length=max_length)
    result = run_pipeline(cfg, source="proxysel demo")
    out = result.out
    sel_dir = result.selections["lp_app-30"]
    meta = json.loads((sel_dir / "meta.json").read_text())
    scores = pq.read_table(out / "scores.parquet").to_pydict()
    kept = dict(zip(*pq.read_table(sel_dir / "selection.parquet", columns=["id", "selected"]).to_pydict().values()))
    by_id = {e.id: e for e in read_pool(result.data).examples}
    ids = scores["id"]
    lpa = np.array([np.nan if v is None else v for v in scores["lp_app"]], dtype=float)
    ok = np.flatnonzero(np.isfinite(lpa))
    order = ok[np.argsort(lpa[ok], kind="stable")]

    def row(i: int) -> str:
        e = by_id[ids[i]]
        user = next((m.content for m in e.messages if m.role == "user"), "")
        p0, p1 = scores["ppl_epoch"][i][:2]
        return (f"  {lpa[i]:+.4f}  {p0:7.2f} -> {p1:7.2f}  {'kept   ' if kept.get(ids[i]) else 'dropped'}  "
                f"{ids[i]:<10} {_preview(user, 56)}")

    n_trunc = int(sum(bool(t) for t in scores["truncated"]))
    lines = [f"proxysel demo: LP_app of {model} ({cfg.train_proxy.dtype}, max_length {cfg.train_proxy.max_length}, "
             f"1 epoch) on {len(ids)} real ShareGPT conversations; {meta['n_selected']} kept "
             f"({DEMO_BUDGET:.0%}) in {cfg.select[0].clusters} clusters, {time.perf_counter() - t0:.0f}s", ""]
    if cfg.train_proxy.max_length == DEMO_MAX_LENGTH:
        lines += [f"max_length {DEMO_MAX_LENGTH}, one epoch and bf16 where the CPU has it keep the demo under 15 "
                  "minutes on 2 cores; --max-length 512 reads more of each conversation in roughly 1.7x the time."]
    if n_trunc:
        lines += [f"{n_trunc} conversations have prompts longer than {cfg.train_proxy.max_length} tokens: their "
                  "response is cut away, so they are marked truncated and left out."]
    lines += [""]
    lines += ["hardest (lowest LP_app: the proxy learned least from one epoch; kept first in each cluster):",
              "   LP_app    P_0  ->   P_1     outcome  id         first user turn"]
    lines += [row(i) for i in order[:show]]
    lines += ["", "easiest (highest LP_app: learned most):"]
    lines += [row(i) for i in order[::-1][:show]]
    lines += ["", describe(out), f"input sample: {result.data}",
              f"rerun or change it: proxysel run {out / 'config.yaml'} select.budget=0.2 select.name=lp_app-20",
              f"why was an example kept? proxysel explain {out} ID"]
    return {"run": out, "data": result.data, "selection": sel_dir / meta["file"], "report": result.report,
            "summary": "\n".join(lines)}


def select(run_dir: str | Path, *, method: str, budget: str | float | int, seed: int = 0,
           name: str | None = None, stratify: str | None = None, data: str | Path | None = None,
           overwrite: bool = False, **params: Any) -> Path:
    """Select a subset from ``run_dir``'s scores; returns RUN/selections/NAME.

    method: a registered selector (``random``, ``top``, ``lp``, ``lp_app``, ``s2l``, ``density``,
    ``ask_llm``, ``ifd``). budget: a fraction in (0, 1) or a count. params: the selector's options
    (``clusters``, ``signal``, ``order``, ``rounding``, ``within_clusters``, ``with_replacement``,
    ``include_truncated``). The same run, parameters and seed give the same selection.

    >>> proxysel.select("runs/r1", method="lp_app", budget=0.1, seed=0)  # doctest: +SKIP
    """
    from proxysel.selection import select_run

    return select_run(run_dir, method=method, budget=budget, seed=seed, name=name, params=params,
                      stratify=stratify, data=data, overwrite=overwrite)


def bench(config_or_preset: str | Path | dict[str, Any] | Any, *, out: str | Path | None = None,
          dotted: Sequence[str] = (), preset: str | None = None, overwrite: bool = False,
          echo: Any = None, **overrides: Any) -> Path:
    """Train a target on every (selector, budget, seed) subset and write the table; returns the bench folder.

    config_or_preset: a preset name (``tiny``, ``synthetic``, ``cpu``, ``gpu``), a YAML file, a dict
    in the same layout, or a ``proxysel.benchmarking.config.BenchConfig``. ``preset`` merges a
    file or dict over that preset. ``dotted``: text overrides (``["target.epochs=5"]``);
    ``overrides``: field values (``seeds=[0]``, ``match="steps"``, ``target={"epochs": 5}``, a
    mapping merged into its section). Outputs: results.csv, results.md, keep_rates.csv, plot.png,
    transfer.json, winrate.json with ``winrate={"enabled": True}`` (docs/bench.md). Rerunning
    resumes; finished cells are not retrained.
    Bad configs raise ConfigError (exit code 2) naming the dotted field.

    >>> proxysel.bench("tiny", out="runs/bench-tiny", seeds=[0])  # doctest: +SKIP
    PosixPath('runs/bench-tiny')
    """
    from proxysel.benchmarking.config import BenchConfig, bench_config_dict, load_bench_config
    from proxysel.benchmarking.presets import PRESETS
    from proxysel.benchmarking.runner import run_bench

    fields = {k: v for k, v in overrides.items() if v is not None}
    if out is not None:
        fields["out"] = str(out)
    if isinstance(config_or_preset, BenchConfig):
        cfg = load_bench_config(bench_config_dict(config_or_preset), overrides=dotted, fields=fields)
    elif isinstance(config_or_preset, str) and config_or_preset in PRESETS and not Path(config_or_preset).exists():
        cfg = load_bench_config(preset=config_or_preset, overrides=dotted, fields=fields)
    else:
        cfg = load_bench_config(config_or_preset, preset=preset, overrides=dotted, fields=fields)
    return run_bench(cfg, overwrite=overwrite, echo=echo)


def compare(run_a: str | Path, run_b: str | Path, *, signal: str = "loss", signal_b: str | None = None,
            order: str = "low") -> dict[str, Any]:
    """Spearman/Kendall of ``signal`` between two runs and the overlap of their top 1/5/10/30%."""
    from proxysel.selection import compare_runs

    return compare_runs(run_a, run_b, signal=signal, signal_b=signal_b, order=order)
