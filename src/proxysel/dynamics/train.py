"""The proxy training loop: fine-tune on the pool and score the whole pool at planned steps.

Read ``train`` from top to bottom; the helpers above it are the parts one step is made of.

The recipe follows the official LP code (Small2Large, which trains with the HF Trainer):
AdamW (betas 0.9/0.999, eps 1e-8, fused where torch has it, as the Trainer's default
``adamw_torch_fused``), lr 2e-5 with linear warmup over ceil(0.03 x steps) and cosine decay to
0 (``schedule.cosine_lr``), gradient clipping at norm 1.0, effective batch 32 = batch_size x
grad_accum, 3 epochs, response tokens only.

Loss normalisation (a deliberate choice): the loss of one optimizer step is the sum of the
token losses of the whole effective batch divided by its number of scored tokens, i.e. the
per-token mean over the effective batch, whatever the micro-batches. Every response token
weighs the same, and the gradient does not depend on how the batch is cut into micro-batches,
which lets ``schedule.micro_batches`` sort them by length. This is what transformers >= 4.46
Trainer does for models that accept ``num_items_in_batch`` (Llama, Gemma, ...). The official LP
code ran on an older Trainer, which took the mean per micro-batch and divided it by the
accumulation steps: there every micro-batch weighed the same, so a token of a short response
weighed more than one of a long response. The difference changes the step sizes, not the
procedure; the per-token choice is the one that does not depend on the micro-batch size.

Online losses (``online=True``): P_i of an example is then exp of its mean token loss in the
training forward pass of epoch i, i.e. with the weights of the moment it is trained on, before
its own update (train mode; the same as eval mode for models without dropout). For epoch 1 an
example of the first batch gets exactly P_0 and one of the last batch nearly the end-of-epoch
weights, so the online P_1 mixes "how much the model learned so far" into the signal and is
an approximation of the exact P_1 (a pass over the pool after the epoch). What it saves is
that pass: lp_app costs one epoch plus one pass (P_0). On real data (benchmarks/RESULTS.md)
the online P_1 ranks like the exact one (Spearman 0.997) but lp_app computed from it does not
(the small drop P_0 - P_1 is swamped by when in the epoch an example was seen): a cheap P_1,
not a cheap lp_app.

Mixed precision: with ``dtype="bfloat16"`` the weights and the optimizer stay float32 and the
forward and backward passes run under bf16 autocast (plain bf16 weights lose the lr-2e-5
updates to rounding). The scoring passes then also run under bf16 autocast.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from proxysel.dynamics.distributed import Dist
from proxysel.dynamics.schedule import Plan, cosine_lr, make_plan, micro_batches
from proxysel.dynamics.state import latest_state, load_state, save_state, trainable_parameters
from proxysel.engine import batch_token_losses, collate, free_accelerator_memory, is_out_of_memory
from proxysel.errors import UsageError
from proxysel.models.loader import warn_if_emulated_bf16
from proxysel.models.render import Encoded
from proxysel.options import TrainProxyConfig, TrainRecipe

log = logging.getLogger(__name__)

#: The hyper-parameters of the loop are ``proxysel.options.TrainProxyConfig`` (the ``train-proxy``
#: options; the bench target's recipe is its base ``TrainRecipe``): declared once, with defaults,
#: help and validation, and read here as they are.
TrainConfig = TrainProxyConfig


@dataclass
class TrainLog:
    """What the loop reports. history: one dict per optimizer step (step, epoch, loss, lr, grad_norm,
    tokens), including the steps of earlier, interrupted processes of the same run."""

    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None
    seconds_train: float = 0.0
    seconds_eval: float = 0.0
    tokens_trained: int = 0


# ---- the parts of a step ----------------------------------------------------------------------

@contextlib.contextmanager
def seeded_rng(seed: int, device: Any) -> Iterator[None]:
    """Inside the block torch's RNG (CPU, and ``device`` when it is CUDA) starts from ``seed``;
    after it, the caller's RNG state is restored (``torch.random.fork_rng``)."""
    import torch

    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def add_lora(model: Any, config: TrainRecipe) -> None:
    """Inject LoRA adapters into every linear layer of ``model`` in place and freeze the rest.

    In place (not a PeftModel wrapper), so the model keeps its class and the scoring engine
    sees the same backbone and lm_head. The adapters' random initial weights (LoRA's A matrices)
    are drawn from ``config.seed`` in a forked RNG: the same seed gives the same adapters whatever
    ran before in the process (a bench's earlier cells), and the caller's RNG is left as it was.
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as e:
        raise UsageError("--lora needs peft: pip install 'proxysel[models]'") from e
    cfg = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                     target_modules="all-linear", bias="none")
    for p in model.parameters():
        p.requires_grad_(False)
    with seeded_rng(config.seed, next(model.parameters()).device):
        inject_adapter_in_model(cfg, model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)


def make_optimizer(model: Any, config: TrainRecipe) -> Any:
    """AdamW over the trainable parameters; weight decay on matrices only."""
    import torch

    params = list(trainable_parameters(model).values())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    # fused: one kernel for all parameters (what the Trainer uses on torch >= 2.8); it gives the
    # same update as the for-loop implementation up to float rounding.
    fused = all(p.dtype in (torch.float32, torch.bfloat16, torch.float16) for p in params)
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999), eps=1e-8, fused=fused or None)


def autocast(config: TrainRecipe, device: Any) -> Any:
    import torch

    if config.dtype == "bfloat16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def autocast_off(device: Any) -> Any:
    """A region without autocast inside an autocast region (the outer region's weight cache survives it)."""
    import torch

    return torch.autocast(device_type=torch.device(device).type, enabled=False)


@dataclass
class BatchStats:
    """loss: per-token mean over the effective batch (what was differentiated). tokens: input tokens
    (padding excluded). example_loss: float64 (len(batch),), each example's mean token loss."""

    loss: float
    tokens: int
    example_loss: np.ndarray


def backward(model: Any, encoded: Sequence[Encoded], batch: Sequence[int], *, pad_id: int,
             config: TrainProxyConfig, device: Any, lengths: Sequence[int] | None = None,
             dist: Dist | None = None) -> BatchStats:
    """Accumulate into ``.grad`` the gradient of the per-token mean loss over the effective ``batch``.

    The batch is cut into micro-batches of ``config.batch_size`` (longest first); each micro-batch's
    token losses are summed and divided by the scored tokens of the *whole* batch, so after the
    last micro-batch the gradient is that of the effective batch's per-token mean, whatever
    the micro-batch size is (up to float rounding).

    dist: with several ranks (``dynamics.distributed``), this rank runs micro-batches rank,
    rank + world, ... and the gradients and the returned stats are then summed over the ranks,
    so every rank ends with the gradient and stats of the whole effective batch.

    Out of memory (CUDA OOM, or MemoryError on the CPU) in a micro-batch: this rank's gradients
    are dropped (``.grad = None``; the caller zeroes them before every step anyway), its
    micro-batches are cut in halves and the whole effective batch is run again. A failed backward
    pass may have added part of its gradient already, so only a fresh start is exact. The
    micro-batches of the other ranks do not change. A single example that does not fit raises.
    """
    import torch


    dist = dist or Dist()
    lengths = lengths if lengths is not None else [e.n_tokens for e in encoded]
    n_scored = sum(encoded[i].n_response_tokens for i in batch)  # the whole batch's: every rank knows it
    where = {int(i): k for k, i in enumerate(batch)}
    mine = micro_batches(batch, lengths, config.batch_size)[dist.rank::dist.world]
    size = max((len(m) for m in mine), default=1)
    while True:
        micros = [m[s:s + size] for m in mine for s in range(0, len(m), size)]
        example_loss = np.full(len(batch), np.nan)
        loss_sum, tokens = 0.0, 0
        try:
            # One autocast region for all the micro-batches: autocast keeps the bf16 copy of each
            # float32 weight for the whole region, so the weights are cast once per step instead of
            # once per micro-batch (they change only at the optimizer step). The backward passes run
            # with autocast off, as they did outside the region (same ops, same numbers).
            with autocast(config, device):
                for micro in micros:
                    ids, att, tgt = collate([encoded[i] for i in micro], pad_id, device)
                    losses, rows = batch_token_losses(model, ids, att, tgt)
                    with autocast_off(device):
                        (losses.sum() / n_scored).backward()
                    losses = losses.detach().double()
                    loss_sum += float(losses.sum())
                    tokens += int(att.sum())
                    sums = torch.zeros(len(micro), dtype=torch.float64, device=losses.device).index_add_(
                        0, rows, losses)
                    counts = torch.bincount(rows, minlength=len(micro)).double()
                    example_loss[[where[int(i)] for i in micro]] = (sums / counts).cpu().numpy()
            break
        except (MemoryError, RuntimeError) as e:
            if not is_out_of_memory(e) or size <= 1:
                raise
            for p in trainable_parameters(model).values():
                p.grad = None
            size //= 2
            log.warning("out of memory in a training micro-batch; retrying the step with micro-batches of %d "
                        "examples (lower --batch-size and raise --grad-accum to avoid this)", size)
            free_accelerator_memory()
    if dist.world > 1:
        dist.all_reduce_grads(list(trainable_parameters(model).values()))
        # One float64 vector: loss sum, token count, then each example's loss (0 on the ranks that did
        # not train it, so the sum is exact).
        stats = torch.tensor([loss_sum, float(tokens), *np.nan_to_num(example_loss, nan=0.0)],
                             dtype=torch.float64)
        owned = torch.tensor(~np.isnan(example_loss), dtype=torch.float64)
        if dist.backend == "nccl":
            stats, owned = stats.to(device), owned.to(device)
        dist.all_reduce_sum(stats)
        dist.all_reduce_sum(owned)
        stats, owned = stats.cpu().numpy(), owned.cpu().numpy()
        loss_sum, tokens = float(stats[0]), int(round(stats[1]))
        example_loss = np.where(owned > 0, stats[2:], np.nan)
    return BatchStats(loss_sum / n_scored, tokens, example_loss)


def optimizer_step(optimizer: Any) -> None:
    """One optimizer update (a function of its own so tests can interrupt a run right here)."""
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# ---- the loop -----------------------------------------------------------------------------------

def train(model: Any, encoded: Sequence[Encoded], *, pad_id: int, config: TrainProxyConfig, plan: Plan,
          state_dir: str | Path, evaluate: Callable[[int], None],
          record_online: Callable[[int, np.ndarray], None] | None = None,
          save_checkpoint: Callable[[int], None] | None = None,
          progress: Any = None, dist: Dist | None = None) -> TrainLog:
    """Train ``model`` on ``encoded`` following ``plan``; resumes from ``state_dir`` if a state is there.

    At each step s of ``plan.pass_steps`` (s updates done), in this order:
    ``save_checkpoint(s)`` (weights kept for the user), then ``evaluate(s)`` (score the whole
    pool; the caller stores the losses). With ``config.online``, ``record_online(e, loss)`` gets
    the per-example losses (float64 (n,), NaN where not trained) of the training forward passes
    of epoch e when it ends. The resumable state is saved at ``plan.save_steps`` before any of
    these, so an interruption inside a long scoring pass does not repeat training. The callbacks
    must be idempotent: after a resume they may be called again for the step resumed from.

    progress: an object with ``update(n_steps, tokens, **postfix)`` (a proxysel Progress bar).
    dist: the data-parallel job (``dynamics.distributed``); every rank calls ``train`` with the same
    arguments, trains on its share of each batch, and only rank 0 saves the training state.
    """
    device = next(model.parameters()).device
    warn_if_emulated_bf16(config.dtype, device)  # here, once per run: autocast() is entered every step
    # dropout, for models that have it, draws from config.seed; the caller's RNG is left as it was
    with seeded_rng(config.seed, device):
        return _train(model, encoded, pad_id=pad_id, config=config, plan=plan, state_dir=state_dir,
                      evaluate=evaluate, record_online=record_online, save_checkpoint=save_checkpoint,
                      progress=progress, device=device, dist=dist or Dist())


def _train(model: Any, encoded: Sequence[Encoded], *, pad_id: int, config: TrainProxyConfig, plan: Plan,
           state_dir: str | Path, evaluate: Callable[[int], None],
           record_online: Callable[[int, np.ndarray], None] | None,
           save_checkpoint: Callable[[int], None] | None, progress: Any, device: Any, dist: Dist) -> TrainLog:
    import torch

    lengths = [e.n_tokens for e in encoded]
    params = list(trainable_parameters(model).values())
    optimizer = make_optimizer(model, config)
    out = TrainLog()

    # Resume: parameters, optimizer moments, RNG and the online losses of the current epoch.
    # The lr schedule and the data position are functions of the step (see schedule.py).
    start = 0
    online = np.full(len(encoded), np.nan)
    if (saved := latest_state(state_dir)) is not None:
        meta, arrays = load_state(saved, model, optimizer)
        start, out.history, out.resumed_from = meta["step"], meta["history"], meta["step"]
        online = arrays.get("online", online)
        log.info("resuming proxy training from %s (step %d of %d)", saved, start, plan.total_steps)
    if progress is not None and start:
        progress.update(start)

    model.train()
    for step in range(start, plan.total_steps + 1):
        epoch = step // plan.steps_per_epoch  # epochs finished
        # The work that belongs "between" updates. At the step a run resumes from, the online
        # record and the state were already written before the state was saved.
        if step > start:
            if config.online and record_online is not None and step % plan.steps_per_epoch == 0:
                record_online(epoch, online)
                online = np.full(len(encoded), np.nan)
            if step in plan.save_steps and dist.is_main:
                save_state(state_dir, step, model, optimizer, arrays={"online": online},
                           meta={"history": out.history})
        if step in plan.pass_steps:
            t0 = time.perf_counter()
            if save_checkpoint is not None:
                save_checkpoint(step)
            evaluate(step)
            model.train()
            out.seconds_eval += time.perf_counter() - t0
        if step == plan.total_steps:
            break

        # One optimizer update on the effective batch of this step.
        t0 = time.perf_counter()
        batch = plan.batch(step, config.seed)
        lr = cosine_lr(step, base_lr=config.lr, warmup_steps=plan.warmup_steps, total_steps=plan.total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        stats = backward(model, encoded, batch, pad_id=pad_id, config=config, device=device, lengths=lengths,
                         dist=dist)
        if config.online:
            online[batch] = stats.example_loss
        grad_norm = (torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                     if config.max_grad_norm > 0 else torch.tensor(float("nan")))
        optimizer_step(optimizer)

        out.seconds_train += time.perf_counter() - t0
        out.tokens_trained += stats.tokens
        out.history.append({"step": step + 1, "epoch": epoch + 1, "loss": stats.loss, "lr": lr,
                            "grad_norm": float(grad_norm), "tokens": stats.tokens})
        if progress is not None:
            progress.update(1, stats.tokens, loss=f"{stats.loss:.3f}", epoch=epoch + 1)
    return out


def fine_tune(model: Any, encoded: Sequence[Encoded], *, pad_id: int, config: TrainConfig,
              state_dir: str | Path, max_length_name: str = "max_length") -> tuple[Plan, TrainLog]:
    """Train ``model`` in place on ``encoded`` for ``config.epochs`` with the loop above and no scoring
    passes (LoRA adapters first when ``config.lora``); resumes from ``state_dir``.

    What the bench's targets and CoLoR-Filter's conditional model are trained with. Returns the
    plan (steps, trainable rows) and the training log. ``max_length_name`` names the option the
    error points to when truncation left no example with a response to train on.
    """
    if config.lora:
        add_lora(model, config)
    plan = make_plan([e.truncated for e in encoded], epochs=config.epochs,
                     effective_batch=config.effective_batch, n_checkpoints=0,
                     warmup_ratio=config.warmup_ratio)
    if len(plan.trainable) == 0:
        raise UsageError(f"every one of the {len(encoded)} training examples lost its response to "
                         f"{max_length_name}")
    result = train(model, encoded, pad_id=pad_id, config=config, plan=plan, state_dir=state_dir,
                   evaluate=lambda step: None)
    return plan, result
