"""The ``train-proxy`` stage: train the proxy on the pool and store ppl_epoch, trajectory, lp, lp_app.

Layout of ``RUN/stages/train-proxy/``:

    fingerprint.json, COMPLETE        as every stage (store.run)
    shard-XXXXX.parquet (+ .done)     per-example losses of one *record*, in parts of
                                      ``shard_size`` examples (input order): record r, part j is
                                      shard ``r * n_parts + j``. Records are the scoring passes
                                      (one per step of plan.pass_steps, in order), then with
                                      --online one per epoch (the training forward losses).
                                      Each shard is the ``loss`` stage's table (id, n_tokens,
                                      n_response_tokens, truncated, loss, ppl), so a pass of
                                      train-proxy and ``proxysel score`` of the same weights
                                      compute the same numbers the same way.
    merged.parquet (+ .done)          the table merged into scores.parquet (ppl_epoch, lp, ...),
                                      kept so that a damaged scores.parquet can be rebuilt
    history.jsonl                     the training loss, lr and gradient norm of every step
    state/step-XXXXXX/                the resumable training state (dynamics.state); removed
                                      when the stage completes
    checkpoints/step-XXXXXX/          with --keep-checkpoints: the weights at every pass step
                                      (full fine-tuning: a model folder ``proxysel score
                                      --model`` can read; LoRA: adapter.safetensors)
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from proxysel.data.example import Pool
from proxysel.dynamics.distributed import Dist, collect_by_id, rank_batches
from proxysel.dynamics.schedule import Plan, make_plan
from proxysel.dynamics.state import save_tensors, trainable_parameters
from proxysel.dynamics.train import add_lora, autocast, train
from proxysel.engine import LossResult, score_losses
from proxysel.errors import UsageError
from proxysel.models.loader import load_causal_lm, resolve_model_path
from proxysel.models.render import Renderer
from proxysel.options import ReadConfig, RuntimeConfig, TrainProxyConfig
from proxysel.progress import Progress
from proxysel.signals.loss import loss_table
from proxysel.signals.lp import lp, lp_app
from proxysel.stages.inputs import read_input, record_data
from proxysel.stages.sharded import shards
from proxysel.store import Run
from proxysel.store.atomic import atomic_write_folder, atomic_write_text, save_model_folder

log = logging.getLogger(__name__)

STAGE = "train-proxy"
HISTORY = "history.jsonl"  # one JSON object per optimizer step: step, epoch, loss, lr, grad_norm, tokens


def _write_checkpoint(folder: Path, lm: Any, lora: bool) -> None:
    """Save the current weights to ``folder`` (safetensors only), atomically."""
    if lora:
        atomic_write_folder(folder, lambda tmp: save_tensors(tmp / "adapter.safetensors",
                                                             trainable_parameters(lm.model)))
    else:
        save_model_folder(folder, lm.model, lm.tokenizer)


class _Quiet:
    """The progress bar of ranks other than 0."""

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _rate(tokens: int, seconds: float) -> float | None:
    """Tokens per second, rounded to 0.1; None when nothing was timed."""
    return round(tokens / seconds, 1) if seconds > 0 else None


def _record_losses(stage: Any, record: int, n_parts: int) -> np.ndarray:
    """The stored losses of record ``record``: float64 (n_examples,) in pool order."""
    parts = [stage.read_shard(record * n_parts + j) for j in range(n_parts)]
    return np.concatenate([np.asarray(t.column("loss").to_numpy(zero_copy_only=False), dtype=np.float64)
                           for t in parts])


#: The options the stage's results depend on (its fingerprint); lp_epoch and keep_checkpoints only
#: change what is derived or kept, so changing them reruns nothing.
FINGERPRINT_FIELDS = ("epochs", "lr", "batch_size", "grad_accum", "warmup_ratio", "weight_decay",
                      "max_grad_norm", "seed", "dtype", "lora", "lora_r", "lora_alpha", "online",
                      "batch_tokens")


def _n_records(plan_info: dict[str, Any], config: TrainProxyConfig) -> int:
    """Records the stage stores: one per scoring pass, then with --online one per epoch."""
    return len(plan_info["pass_steps"]) + (config.epochs if config.online else 0)


def _records_intact(stage: Any, info: dict[str, Any], n_parts: int, config: TrainProxyConfig) -> bool:
    """Whether every shard of a complete stage is there and matches its marker.

    A damaged record cannot be scored again without the weights of its step, and the training
    state is removed when the stage completes: the stage is then trained again from the start
    (same seed, same plan, so the same weights), and only the damaged shards are scored again.
    """
    plan_info = info.get("plan")
    if not isinstance(plan_info, dict) or "pass_steps" not in plan_info:
        return True  # nothing to check against; assembling the columns reports a missing shard
    bad = [k for k in range(_n_records(plan_info, config) * n_parts) if not stage.shard_done(k)]
    if bad:
        log.warning("train-proxy: %d shard(s) damaged or missing (first: %s); the proxy is trained again, "
                    "with the same seed, to score them again", len(bad), stage.shard_path(bad[0]))
    return not bad


def run_train_proxy_stage(run: Any, pool: Pool, config: TrainProxyConfig, runtime: RuntimeConfig,
                          dist: Dist | None = None) -> dict[str, Any]:
    """Train (or resume) the proxy into ``run``'s ``train-proxy`` stage and merge its columns.

    Writes to scores.parquet: ``n_tokens``, ``n_response_tokens``, ``truncated``, ``ppl_epoch``
    (list of n+1 floats P_0..P_n), ``trajectory`` (list of per-checkpoint losses; only with
    checkpoints > 0), ``lp`` and ``lp_app`` (for epoch ``lp_epoch``). NaN where truncated.
    Returns the stage's manifest entry.

    dist: a data-parallel job (``dynamics.distributed``): every rank calls this with the same
    arguments; rank 0 passes the open ``run``, the others None. Rank 0 returns the manifest
    entry, the others {}.
    """
    _, revision = resolve_model_path(config.model)
    fingerprint = {"data": pool.fingerprint, "model": config.model, "revision": revision,
                   "max_length": config.max_length, "template": config.template,
                   "shard_size": runtime.shard_size, "checkpoints": config.n_checkpoints,
                   **{k: getattr(config, k) for k in FINGERPRINT_FIELDS}}
    dist = dist or Dist()
    stage = dist.on_main(lambda: run.stage(STAGE, fingerprint))  # a fingerprint conflict stops every rank
    n = len(pool.examples)
    parts = shards(n, runtime.shard_size)
    ids = [e.id for e in pool.examples]
    info: dict[str, Any] = dict(run.manifest["stages"].get(STAGE, {})) if dist.is_main else {}
    stage_path, complete = dist.broadcast(
        (str(stage.path), stage.complete and _records_intact(stage, info, len(parts), config))
        if dist.is_main else None)

    if not complete:
        info.update(_train_stage(run, stage, pool, parts, config=config, runtime=runtime, dist=dist,
                                 stage_path=Path(stage_path)))
    if not dist.is_main:
        return {}
    plan_info = info["plan"]
    pass_steps, checkpoints, epoch_ends = (plan_info["pass_steps"], plan_info["checkpoints"],
                                           plan_info["epoch_ends"])

    # Assemble the columns from the stored records (also when the stage was already complete,
    # e.g. rerun with another --lp-epoch: no model is loaded then).
    first = [stage.read_shard(j) for j in range(len(parts))]
    losses = {s: _record_losses(stage, k, len(parts)) for k, s in enumerate(pass_steps)}
    if config.online:
        after = [_record_losses(stage, len(pass_steps) + e, len(parts)) for e in range(config.epochs)]
    else:
        after = [losses[s] for s in epoch_ends]
    with np.errstate(over="ignore"):
        ppl_epoch = np.exp(np.stack([losses[0], *after], axis=1))  # (n, epochs + 1)
    columns: dict[str, Any] = {
        "id": pa.array(ids, pa.string()),
        "n_tokens": pa.concat_arrays([t.column("n_tokens").combine_chunks() for t in first]),
        "n_response_tokens": pa.concat_arrays([t.column("n_response_tokens").combine_chunks()
                                               for t in first]),
        "truncated": pa.concat_arrays([t.column("truncated").combine_chunks() for t in first]),
        "ppl_epoch": pa.array(list(ppl_epoch), pa.list_(pa.float64())),
    }
    if checkpoints:
        trajectory = np.stack([losses[s] for s in checkpoints], axis=1)  # (n, len(checkpoints))
        columns["trajectory"] = pa.array(list(trajectory), pa.list_(pa.float64()))
    columns["lp"] = pa.array(lp(ppl_epoch, config.lp_epoch), pa.float64())
    columns["lp_app"] = pa.array(lp_app(ppl_epoch, config.lp_epoch), pa.float64())
    table = pa.table(columns)
    if [i for t in first for i in t.column("id").to_pylist()] != ids:
        raise UsageError(f"stage {stage.path} holds other example ids than the pool; rerun with --overwrite")
    stage.merge_scores(table, derived=True)

    info["lp_epoch"] = config.lp_epoch
    info.pop("fingerprint", None)
    info.pop("status", None)
    stage.mark_complete(info)
    shutil.rmtree(stage.path / "state", ignore_errors=True)  # 1-3x the model size; done with it
    return run.manifest["stages"][STAGE]


def _train_stage(run: Any, stage: Any, pool: Pool, parts: list[range], *, config: TrainProxyConfig,
                 runtime: RuntimeConfig, dist: Dist, stage_path: Path) -> dict[str, Any]:
    model, max_length, keep_checkpoints = config.model, config.max_length, config.keep_checkpoints
    # Weights stay float32 in both modes: bfloat16 means autocast (see dynamics.train).
    lm = load_causal_lm(model, dtype="float32", device=dist.device(runtime.device) or "cpu",
                        trust_remote_code=runtime.trust_remote_code, allow_pickle=runtime.allow_pickle)
    if config.lora:
        add_lora(lm.model, config)
    pad_id = lm.tokenizer.pad_token_id
    renderer = Renderer(lm.tokenizer, max_length=max_length, template=config.template)
    encoded = [renderer.encode(e) for e in pool.examples]
    truncated = [e.truncated for e in encoded]
    plan: Plan = make_plan(truncated, epochs=config.epochs, effective_batch=config.effective_batch,
                           n_checkpoints=config.n_checkpoints, warmup_ratio=config.warmup_ratio,
                           online=config.online)
    if len(plan.trainable) == 0:
        raise UsageError(f"all {len(encoded)} examples lost their response to --max-length {max_length}: "
                         "nothing to train on")
    if config.n_checkpoints and len(plan.checkpoints) < config.n_checkpoints:
        log.warning("--checkpoints %d: the run has only %d optimizer steps, so the trajectory has %d points",
                    config.n_checkpoints, plan.total_steps, len(plan.checkpoints))
    n_parts = len(parts)
    pass_index = {s: k for k, s in enumerate(plan.pass_steps)}
    ids = [e.id for e in pool.examples]
    scored = {"tokens": 0}  # tokens of the scoring passes this process computed

    def write_record(record: int, part: int, losses: np.ndarray, idx: range) -> None:
        sub = [encoded[i] for i in idx]
        res = LossResult(np.asarray(losses, dtype=np.float64),
                         np.array([e.n_tokens for e in sub], dtype=np.int64),
                         np.array([e.n_response_tokens for e in sub], dtype=np.int64),
                         np.array([e.truncated for e in sub], dtype=bool))
        stage.write_shard(record * n_parts + part, loss_table([ids[i] for i in idx], res))

    def part_losses(idx: range, bar: Any) -> np.ndarray | None:
        """The losses of the examples ``idx`` with the current weights (on rank 0; None elsewhere)."""
        sub = [encoded[i] for i in idx]
        if dist.world == 1:
            return score_losses(lm.model, sub, pad_id=pad_id, batch_tokens=config.batch_tokens,
                                on_batch=lambda m, t: bar.update(m, t)).loss
        mine_ids: list[str] = []
        mine: list[float] = []
        device = next(lm.model.parameters()).device
        for batch in rank_batches(sub, config.batch_tokens, dist.rank, dist.world, device):
            res = score_losses(lm.model, [sub[b] for b in batch], pad_id=pad_id,
                               batch_tokens=config.batch_tokens)
            mine_ids += [ids[idx[b]] for b in batch]
            mine += res.loss.tolist()
        gathered = dist.gather((mine_ids, mine))
        bar.update(len(idx))
        if not dist.is_main:
            return None
        return np.asarray(collect_by_id([ids[i] for i in idx], [e.truncated for e in sub], gathered))

    def evaluate(step: int) -> None:
        record = pass_index[step]
        todo = dist.broadcast([j for j in range(n_parts) if not stage.shard_done(record * n_parts + j)]
                              if dist.is_main else None)
        if not todo:
            return
        with _progress(sum(len(parts[j]) for j in todo), f"score after {step} steps") as bar, \
                autocast(config, lm.model.device):
            for j in todo:
                losses = part_losses(parts[j], bar)
                scored["tokens"] += sum(encoded[i].n_tokens for i in parts[j])
                if dist.is_main:
                    write_record(record, j, losses, parts[j])

    def record_online(epoch: int, losses: np.ndarray) -> None:
        if dist.is_main:  # every rank holds the whole array (train.backward sums it over ranks)
            for j, idx in enumerate(parts):
                write_record(len(plan.pass_steps) + epoch - 1, j, losses[idx.start:idx.stop], idx)

    def save_checkpoint(step: int) -> None:
        if keep_checkpoints and dist.is_main:
            _write_checkpoint(stage_path / "checkpoints" / f"step-{step:06d}", lm, config.lora)

    def _progress(total: int, desc: str, unit: str = "ex") -> Any:
        return Progress(total, desc=desc, unit=unit) if dist.is_main else _Quiet()

    if dist.world > 1:
        log.info("train-proxy: %d ranks (%s); each runs %s of the %d micro-batches of every step",
                 dist.world, dist.backend, "one" if config.grad_accum <= dist.world else
                 f"about {config.grad_accum / dist.world:g}", config.grad_accum)
        if config.grad_accum % dist.world:
            log.warning("--grad-accum %d is not a multiple of the %d ranks: some ranks idle for a "
                        "micro-batch of every step", config.grad_accum, dist.world)

    t0 = time.perf_counter()
    with _progress(plan.total_steps, f"train-proxy [{model}]", unit="step") as bar:
        result = train(lm.model, encoded, pad_id=pad_id, config=config, plan=plan,
                       state_dir=stage_path / "state", evaluate=evaluate, record_online=record_online,
                       save_checkpoint=save_checkpoint, progress=bar, dist=dist)
    elapsed = time.perf_counter() - t0
    hist = result.history
    per_epoch = {}
    for e in range(1, config.epochs + 1):
        vals = [h["loss"] for h in hist if h["epoch"] == e]
        per_epoch[str(e)] = float(np.mean(vals)) if vals else None
    n_trunc = int(np.sum(truncated))
    if not dist.is_main:
        return {}
    atomic_write_text(stage.path / HISTORY, "".join(json.dumps(h, sort_keys=True) + "\n" for h in hist))
    log.info("train-proxy: %d steps (%d examples, %d truncated) in %.1fs (training %.1fs, scoring %.1fs)",
             plan.total_steps, len(encoded), n_trunc, elapsed, result.seconds_train, result.seconds_eval)
    return {
        "model_path": lm.path,
        "plan": {"total_steps": plan.total_steps, "steps_per_epoch": plan.steps_per_epoch,
                 "warmup_steps": plan.warmup_steps, "pass_steps": list(plan.pass_steps),
                 "checkpoints": list(plan.checkpoints), "save_steps": list(plan.save_steps),
                 "epoch_ends": [plan.epoch_end(e) for e in range(1, config.epochs + 1)],
                 "trainable_examples": int(len(plan.trainable))},
        "examples": len(encoded), "truncated": n_trunc, "world_size": dist.world,
        "resumed_from_step": result.resumed_from,
        "shards": _n_records({"pass_steps": plan.pass_steps}, config) * n_parts,
        # What this process computed (a resumed stage counts only its part), as the other stages
        # record it: training and scoring passes together, then each apart.
        "seconds": round(elapsed, 3),
        "tokens_computed": result.tokens_trained + scored["tokens"],
        "tokens_per_s": _rate(result.tokens_trained + scored["tokens"], elapsed),
        "seconds_train": round(result.seconds_train, 3), "tokens_trained": result.tokens_trained,
        "train_tokens_per_s": _rate(result.tokens_trained, result.seconds_train),
        "seconds_scoring": round(result.seconds_eval, 3), "tokens_scored": scored["tokens"],
        "scoring_tokens_per_s": _rate(scored["tokens"], result.seconds_eval),
        "train_loss_per_epoch": per_epoch,
        "train_loss_first_last": [hist[0]["loss"], hist[-1]["loss"]] if hist else None,
        "history": str((stage.path / HISTORY).relative_to(run.path)),
        "checkpoints_dir": (str((stage.path / "checkpoints").relative_to(run.path))
                            if keep_checkpoints else None),
        # the weights after the last step, as a model folder (`score --model`, CoLoR's trained prior)
        "final_checkpoint": (str((stage_path / "checkpoints" / f"step-{plan.total_steps:06d}")
                                 .relative_to(run.path))
                             if keep_checkpoints and not config.lora else None),
    }


def train_proxy(data: str | Path, *, out: str | Path, config: TrainProxyConfig, read: ReadConfig,
                runtime: RuntimeConfig, overwrite: bool = False) -> Path:
    """``proxysel train-proxy``: read ``data`` before any model work, then train (or resume) the proxy
    into the run folder ``out``. Under torchrun / accelerate (``$WORLD_SIZE`` > 1) every rank calls
    this; rank 0 alone opens (and locks) the run folder and writes it."""
    pool = read_input(data, read)
    dist = Dist.from_env(runtime.device)
    try:
        def open_run() -> Any:
            run = Run.open(out, overwrite=overwrite)
            try:
                record_data(run, data, pool, read)
            except BaseException:
                run.close()
                raise
            return run

        run = dist.on_main(open_run)
        with run if run is not None else contextlib.nullcontext():
            run_train_proxy_stage(run, pool, config, runtime, dist=dist)
    except BaseException:
        dist.close(ok=False)
        raise
    dist.close()
    return Path(out)
