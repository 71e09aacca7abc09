"""The scoring engine: per-example mean loss over the scored (response) tokens, fast.

What makes it fast, each measured in benchmarks/score_throughput.py:
- batches are formed over examples sorted by length under a token budget (padded tokens =
  batch size x longest example <= ``batch_tokens``), so little compute goes to padding;
- the backbone runs once, and the lm_head is applied only at the positions that predict a
  scored token (for a 135M model with a 49k vocabulary the lm_head is about a third of the
  FLOPs of a full forward pass), in chunks so that the logits never exceed ~512 MB;
- ``torch.inference_mode`` and no KV cache.

The result equals ``model(input_ids, labels=labels).loss`` at batch size 1 (tests/unit/test_engine_parity.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from proxysel.models.render import IGNORE, Encoded
from proxysel.options import DEFAULT_BATCH_TOKENS
import gc

log = logging.getLogger(__name__)


@dataclass
class LossResult:
    """loss: float64 (n,), mean cross-entropy in nats over scored tokens; NaN where truncated.
    n_tokens, n_response_tokens: int64 (n,). truncated: bool (n,). Row i belongs to encoded[i]."""

    loss: np.ndarray
    n_tokens: np.ndarray
    n_response_tokens: np.ndarray
    truncated: np.ndarray

    @property
    def ppl(self) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.exp(self.loss)


def plan_batches(lengths: Sequence[int], batch_tokens: int, max_batch: int = 256) -> list[list[int]]:
    """Group example indices into batches of similar length.

    Indices are sorted by length, longest first (a memory error then shows up on the first
    batch, not the last), ties kept in input order. A batch grows while
    ``len(batch) x longest <= batch_tokens``; an example longer than the budget gets a batch of
    its own. The plan depends only on the lengths, so a rerun computes identical numbers.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for i in order:
        n = max(lengths[i], 1)
        if cur and ((len(cur) + 1) * max(longest, n) > batch_tokens or len(cur) >= max_batch):
            batches.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    if cur:
        batches.append(cur)
    return batches


def backbone_and_head(model: Any) -> tuple[Any, Any, float | None]:
    base = getattr(model, model.base_model_prefix, None)
    if base is None:
        base = model.get_decoder()
    head = model.get_output_embeddings()
    cap = getattr(model.config, "final_logit_softcapping", None)
    return base, head, cap


def batch_token_losses(model: Any, input_ids: Any, attention_mask: Any, targets: Any,
                       chunk_rows: int | None = None) -> tuple[Any, Any]:
    """Cross-entropy of every scored position of a padded batch, computing logits only there.

    input_ids, attention_mask: int64 (b, t). targets: int64 (b, t); targets[:, j] is the token
    that position j predicts, or -100. Returns (losses float32 (m,), row index int64 (m,)) over
    the m scored positions, in row-major order. Gradients flow when called outside inference mode.
    """
    import torch
    import torch.nn.functional as F

    base, head, cap = backbone_and_head(model)
    hidden = base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    mask = targets != IGNORE
    rows = mask.nonzero(as_tuple=True)[0]
    h = hidden[mask]
    tgt = targets[mask]
    vocab = head.weight.shape[0]
    if chunk_rows is None:
        chunk_rows = max(64, (1 << 27) // vocab)  # keep a chunk of fp32 logits near 512 MB
    out = []
    for s in range(0, h.shape[0], chunk_rows):
        logits = head(h[s:s + chunk_rows]).float()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        out.append(F.cross_entropy(logits, tgt[s:s + chunk_rows], reduction="none"))
    losses = torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)
    return losses, rows


def collate(batch: Sequence[Encoded], pad_id: int, device: Any = "cpu") -> tuple[Any, Any, Any]:
    """Right-pad a batch. Returns input_ids, attention_mask and shifted targets, each int64 (b, t)."""
    import torch

    t = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), t), pad_id, dtype=torch.long)
    att = torch.zeros((len(batch), t), dtype=torch.long)
    tgt = torch.full((len(batch), t), IGNORE, dtype=torch.long)
    for r, e in enumerate(batch):
        n = len(e.input_ids)
        ids[r, :n] = torch.tensor(e.input_ids, dtype=torch.long)
        att[r, :n] = 1
        if n > 1:
            tgt[r, : n - 1] = torch.tensor(e.labels[1:], dtype=torch.long)
    return ids.to(device), att.to(device), tgt.to(device)


def batched_with_backoff(lengths: Sequence[int], batch_tokens: int, run_batch: Callable[[list[int]], None],
                         what: str = "a") -> None:
    """Call ``run_batch(indices)`` over ``plan_batches(lengths, batch_tokens)``, surviving out-of-memory.

    On an out-of-memory error the padded size of the batch that failed is halved and what is left
    is planned again; finished batches are not redone. An example that does not fit alone raises.
    Batches are deterministic for a given budget, so a run without memory errors is reproducible.
    """
    done = np.zeros(len(lengths), dtype=bool)
    remaining = list(range(len(lengths)))
    budget = batch_tokens
    while remaining:
        padded = budget
        try:
            for batch in plan_batches([lengths[i] for i in remaining], budget):
                idx = [remaining[b] for b in batch]
                padded = len(idx) * max(lengths[i] for i in idx)
                run_batch(idx)
                done[idx] = True
            remaining = []
        except (MemoryError, RuntimeError) as e:
            if not is_out_of_memory(e):
                raise
            remaining = [i for i in remaining if not done[i]]
            longest = max(lengths[i] for i in remaining)
            if padded <= longest:
                raise
            budget = max(min(budget, padded) // 2, longest)
            log.warning("out of memory in %s batch; retrying with --batch-tokens %d", what, budget)
            free_accelerator_memory()


def score_losses(model: Any, encoded: Sequence[Encoded], *, pad_id: int, batch_tokens: int = DEFAULT_BATCH_TOKENS,
                 device: Any = None, on_batch: Callable[[int, int], None] | None = None) -> LossResult:
    """Per-example mean loss over scored tokens, in eval mode.

    encoded: the examples; row i of the result belongs to encoded[i].
    batch_tokens: padded tokens per batch (batch size x longest example).
    on_batch(n_examples, n_tokens): called after each batch (progress bars).
    """
    import torch

    n = len(encoded)
    loss = np.full(n, np.nan, dtype=np.float64)
    n_tok = np.array([e.n_tokens for e in encoded], dtype=np.int64)
    n_resp = np.array([e.n_response_tokens for e in encoded], dtype=np.int64)
    trunc = np.array([e.truncated for e in encoded], dtype=bool)
    todo = [i for i in range(n) if not trunc[i]]
    if device is None:
        device = next(model.parameters()).device

    def run_batch(batch: list[int]) -> None:
        idx = [todo[b] for b in batch]
        ids, att, tgt = collate([encoded[i] for i in idx], pad_id, device)
        losses, rows = batch_token_losses(model, ids, att, tgt)
        sums = torch.zeros(len(idx), dtype=torch.float64, device=losses.device)
        sums.index_add_(0, rows, losses.double())
        counts = torch.bincount(rows, minlength=len(idx)).double()
        loss[idx] = (sums / counts).cpu().numpy()
        if on_batch is not None:
            on_batch(len(idx), int(att.sum()))

    with evaluating(model):
        batched_with_backoff([int(n_tok[i]) for i in todo], batch_tokens, run_batch, what="a scoring")
        if on_batch is not None and trunc.any():
            on_batch(int(trunc.sum()), 0)
    return LossResult(loss, n_tok, n_resp, trunc)


@contextlib.contextmanager
def evaluating(model: Any) -> Iterator[None]:
    """Inside the block ``model`` is in eval mode under ``torch.inference_mode``; after it, the
    model's train/eval mode is what it was (the training loop calls the scoring passes)."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def is_out_of_memory(e: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors and a CPU MemoryError."""
    if isinstance(e, MemoryError):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def free_accelerator_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
