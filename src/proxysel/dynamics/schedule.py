"""What happens at which optimizer step of proxy training: data order, batches, lr, passes.

Everything here is a pure function of the pool size, the token lengths and the config, so a
resumed run recomputes exactly the same plan and only needs to know the step it stopped at.

Data order (documented contract, tested):
- Examples whose response was truncated away (nothing to score) are not trained on.
- Epoch ``e`` (1-based) visits the trainable examples in the order
  ``np.random.default_rng([seed, e]).permutation(n_trainable)``: a fresh permutation each
  epoch, independent of every other epoch and of where a run was resumed.
- Consecutive slices of ``batch_size x grad_accum`` examples of that order are the effective
  batches (one optimizer step each); the last one of an epoch may be smaller (as in HF Trainer,
  nothing is dropped).
- Inside an effective batch the examples are sorted by token length (longest first) and cut
  into micro-batches of ``batch_size``. The loss is normalised per token over the whole
  effective batch (see ``proxysel.dynamics.train``), so the gradient does not depend on how the
  effective batch is cut: sorting only removes padding (and changes float summation order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def cosine_lr(step: int, *, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate of optimizer update ``step`` (0-based): linear warmup, then cosine to 0.

    The same function as transformers' ``get_cosine_schedule_with_warmup`` as the HF Trainer
    drives it (the official LP code's schedule), so update 0 runs at lr 0 when there is warmup.

    >>> [round(cosine_lr(s, base_lr=1.0, warmup_steps=2, total_steps=6), 3) for s in range(6)]
    [0.0, 0.5, 1.0, 0.854, 0.5, 0.146]
    """
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def checkpoint_steps(total_steps: int, n_checkpoints: int) -> list[int]:
    """``n_checkpoints`` evenly spaced optimizer steps in [0, total_steps], both ends included.

    Step s means "after s updates" (step 0: before any). Rounded to the nearest step; when the
    run has fewer than ``n_checkpoints`` distinct steps the duplicates collapse, so the list may
    be shorter. 0 checkpoints gives [] (1 would be ambiguous; the config refuses it).

    >>> checkpoint_steps(21, 8)
    [0, 3, 6, 9, 12, 15, 18, 21]
    >>> checkpoint_steps(2, 8)
    [0, 1, 2]
    """
    if n_checkpoints <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, total_steps, n_checkpoints)})


def epoch_order(n_trainable: int, seed: int, epoch: int) -> np.ndarray:
    """The visiting order of epoch ``epoch`` (1-based): a permutation of range(n_trainable)."""
    return np.random.default_rng([seed, epoch]).permutation(n_trainable)


def micro_batches(indices: Sequence[int], lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Cut one effective batch into micro-batches of ``batch_size``, longest examples first.

    Ties keep the order of ``indices``. Returns lists of the same indices.
    """
    ordered = sorted(indices, key=lambda i: -lengths[i])  # sorted() is stable
    return [ordered[s:s + batch_size] for s in range(0, len(ordered), batch_size)]


@dataclass(frozen=True)
class Plan:
    """The step plan of a proxy training run.

    trainable: int64 (n_trainable,), pool positions of the examples trained on (input order).
    steps_per_epoch: optimizer steps per epoch (ceil(n_trainable / effective_batch)).
    checkpoints: the S2L trajectory steps (see ``checkpoint_steps``).
    pass_steps: steps after which the whole pool is scored (sorted, unique): step 0 (P_0), every
        epoch end (P_1..P_n, unless online) and every checkpoint. A checkpoint on an epoch end is
        the same pass, so nothing is scored twice.
    save_steps: steps at which the resumable training state is written: every pass step and
        epoch end except 0 (at step 0 there is nothing to save).
    """

    trainable: np.ndarray
    effective_batch: int
    epochs: int
    steps_per_epoch: int
    warmup_steps: int
    checkpoints: tuple[int, ...]
    pass_steps: tuple[int, ...]
    save_steps: tuple[int, ...]

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def epoch_end(self, epoch: int) -> int:
        """The step at which epoch ``epoch`` (1-based) is finished; epoch 0 "ends" at step 0."""
        return epoch * self.steps_per_epoch

    def batch(self, step: int, seed: int) -> np.ndarray:
        """Pool positions of the effective batch of update ``step`` (0-based), in visiting order."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = epoch_order(len(self.trainable), seed, epoch + 1)
        return self.trainable[order[pos * self.effective_batch:(pos + 1) * self.effective_batch]]


def make_plan(truncated: Sequence[bool], *, epochs: int, effective_batch: int, n_checkpoints: int,
              warmup_ratio: float, online: bool = False) -> Plan:
    """Plan a run over a pool whose examples have the given ``truncated`` flags."""
    trainable = np.flatnonzero(~np.asarray(truncated, dtype=bool)).astype(np.int64)
    steps_per_epoch = math.ceil(len(trainable) / effective_batch)
    total = epochs * steps_per_epoch
    # HF Trainer: warmup steps = ceil(warmup_ratio * max_steps).
    warmup = math.ceil(warmup_ratio * total)
    ckpts = checkpoint_steps(total, n_checkpoints)
    ends = [e * steps_per_epoch for e in range(1, epochs + 1)]
    passes = {0, *ckpts} | (set() if online else set(ends))
    saves = (passes | set(ends)) - {0}
    return Plan(trainable=trainable, effective_batch=effective_batch, epochs=epochs,
                steps_per_epoch=steps_per_epoch, warmup_steps=warmup, checkpoints=tuple(ckpts),
                pass_steps=tuple(sorted(passes)), save_steps=tuple(sorted(saves)))
