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


def _positive(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got {value}")


def score(data: str | Path, *, out: str | Path, signals: str | Sequence[str] = ("loss",),
          model: str = "smollm2-135m", judge: str = "smollm2-135m", embedder: str = "minilm",
          max_length: int = 512, batch_tokens: int = 8192, dtype: str = "float32", template: str = "auto",
          limit: int | None = None, on_bad_record: str = "error", format: str | None = None,
          columns: dict[str, str] | None = None, dedupe: bool = False, shard_size: int = 256,
          overwrite: bool = False, trust_remote_code: bool = False, allow_pickle: bool = False,
          device: str | None = None, density: dict[str, Any] | None = None) -> Path:
    """Score every example of ``data`` and store the signals in the run directory ``out``.

    signals (any of): ``loss`` (mean response-token loss in nats with ``model``, plus ``ppl``,
    ``n_tokens``, ``n_response_tokens``, ``truncated``), ``ifd`` (``ifd``, ``ifd_loss`` with
    ``model``), ``ask_llm`` (P(yes) of ``judge``), ``embedding`` (``embedder`` vectors into
    embeddings.parquet) and ``density`` (LSH kernel density over the stored embeddings).
    Work is split into shards of ``shard_size`` examples in input order; rerunning the same
    command skips finished shards. Returns the run directory.
    """
    import importlib

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
                        density=dict(density or {}))
    # All input is read and validated before any model work (bad input: exit 2, nothing written).
    pool = read_pool(data, format=format, columns=columns, on_bad_record=on_bad_record, limit=limit,
                     dedupe=dedupe)
    if not pool.examples:
        raise UsageError(f"{data}: no usable examples")
    with Run.open(out, overwrite=overwrite) as run:
        _record_data(run, data, pool, format=format, columns=columns, on_bad_record=on_bad_record,
                     limit=limit, dedupe=dedupe)
        for sig in sigs:
            importlib.import_module(f"proxysel.signals.{_SIGNAL_MODULES[sig]}")
            REGISTRY[sig](run, pool, opts)
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
                device: str | None = None) -> Path:
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
    training forward passes (no pass after each epoch: one epoch + one pass for lp_app).
    ``keep_checkpoints`` keeps the weights of every scored step as safetensors under
    ``out/stages/train-proxy/checkpoints/``. Training state is saved at every scored step;
    rerunning the same command resumes an interrupted run. Returns the run directory.

    >>> proxysel.train_proxy("pool.jsonl", out="runs/r1", epochs=1)  # lp_app only  # doctest: +SKIP
    """
    from proxysel.data import read_pool
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
    pool = read_pool(data, format=format, columns=columns, on_bad_record=on_bad_record, limit=limit,
                     dedupe=dedupe)
    if not pool.examples:
        raise UsageError(f"{data}: no usable examples")
    with Run.open(out, overwrite=overwrite) as run:
        _record_data(run, data, pool, format=format, columns=columns, on_bad_record=on_bad_record,
                     limit=limit, dedupe=dedupe)
        run_train_proxy_stage(run, pool, model=model, config=config, max_length=max_length, template=template,
                              lp_epoch=lp_epoch, keep_checkpoints=keep_checkpoints, shard_size=shard_size,
                              trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, device=device)
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


def _preview(text: str, width: int = 72) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def demo(*, limit: int = 300, out: str | Path = "runs/demo", model: str = "smollm2-135m",
         dtype: str = "float32") -> dict[str, Any]:
    """The embedded default: score ``limit`` real ShareGPT conversations with the bundled SmolLM2.

    Returns {"run": path, "data": path, "summary": printable text}.
    """
    import numpy as np

    from proxysel.data import read_pool
    from proxysel.data.sharegpt_demo import demo_pool_path
    from proxysel.store import Run

    if limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    out = Path(out)
    t0 = time.perf_counter()
    with Run.open(out):  # initialise the run folder first: it refuses non-run folders
        pass
    data = demo_pool_path(out / "data", n=limit)
    score(data, out=out, signals=["loss"], model=model, dtype=dtype)
    with Run.open(out) as run:
        table = run.read_scores()
    pool = read_pool(data)
    by_id = {e.id: e for e in pool.examples}
    ids = table.column("id").to_pylist()
    loss = np.asarray(table.column("loss").to_numpy(zero_copy_only=False), dtype=float)
    ok = np.flatnonzero(np.isfinite(loss))
    order = ok[np.argsort(loss[ok], kind="stable")]
    lines = [f"proxysel demo: {len(ids)} ShareGPT conversations scored with {model} in "
             f"{time.perf_counter() - t0:.0f}s (median loss {np.median(loss[ok]):.3f} nats)", "",
             "hardest (highest response loss):"]

    def row(i: int) -> str:
        e = by_id[ids[i]]
        user = next((m.content for m in e.messages if m.role == "user"), "")
        return f"  {loss[i]:6.3f}  {ids[i]:<14} {_preview(user)}"

    lines += [row(i) for i in order[::-1][:5]]
    lines += ["", "easiest (lowest response loss):"]
    lines += [row(i) for i in order[:5]]
    lines += ["", f"run directory: {out}", f"scores:        {out / 'scores.parquet'}",
              f"input sample:  {data}"]
    return {"run": out, "data": data, "summary": "\n".join(lines)}


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


def compare(run_a: str | Path, run_b: str | Path, *, signal: str = "loss", signal_b: str | None = None,
            order: str = "low") -> dict[str, Any]:
    """Spearman/Kendall of ``signal`` between two runs and the overlap of their top 1/5/10/30%."""
    from proxysel.selection import compare_runs

    return compare_runs(run_a, run_b, signal=signal, signal_b=signal_b, order=order)
