"""The scoring engine: per-example mean loss over the scored (response) tokens, fast.

What makes it fast, each measured in benchmarks/score_throughput.py (and benchmarks/bench_quick.py):
- batches are formed over examples sorted by length under a token budget (padded tokens =
  batch size x longest example <= ``batch_tokens``), so little compute goes to padding; on a
  CPU the cuts between batches are placed to minimise padding plus a small cost per batch
  (``plan_batches(batch_cost=CPU_BATCH_COST)``), on a GPU each batch is filled to the budget;
- right-padded batches run without a padding mask: the causal mask alone is exact for every
  real position, and SDPA then takes its causal kernel, which skips the masked half;
- the backbone runs once, and the lm_head is applied only at the positions that predict a
  scored token (for a 135M model with a 49k vocabulary the lm_head is about a third of the
  FLOPs of a full forward pass), in chunks so that the logits never exceed ~512 MB;
- ``torch.inference_mode`` and no KV cache.

The model runs in the dtype its weights are in: ``--dtype bfloat16`` loads bf16 weights and
computes in bf16 (no autocast casts); the proxy-training passes run under bf16 autocast over
float32 weights instead, where autocast casts each weight once per pass.

The result equals ``model(input_ids, labels=labels).loss`` at batch size 1 (tests/unit/test_engine_parity.py).
"""

from __future__ import annotations

import contextlib
import gc
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from proxysel.models.render import IGNORE, Encoded
from proxysel.options import DEFAULT_BATCH_TOKENS

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


def plan_batches(lengths: Sequence[int], batch_tokens: int, max_batch: int = 256,
                 batch_cost: int | None = None) -> list[list[int]]:
    """Group example indices into batches of similar length.

    Indices are sorted by length, longest first (a memory error then shows up on the first
    batch, not the last), ties kept in input order; every batch is a run of that order, with
    ``len(batch) x longest <= batch_tokens`` (an example longer than the budget gets a batch of
    its own) and at most ``max_batch`` examples.

    batch_cost: None fills each batch greedily up to the budget (fewest batches: what a GPU
    wants). A number of tokens cuts the order where that minimises the padded tokens plus
    ``batch_cost`` per batch (dynamic programming over the cut points), which on a CPU, where a
    batch costs little more than its tokens, trades a few more batches for much less padding:
    on 60 ShareGPT conversations at 8192 tokens, 79% real tokens in 3 batches greedily against
    97% in 8 with a cost of 128. The plan depends only on the lengths, so a rerun computes
    identical numbers.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    sizes = [max(lengths[i], 1) for i in order]
    cuts = _greedy_cuts(sizes, batch_tokens, max_batch) if batch_cost is None else \
        _cheapest_cuts(sizes, batch_tokens, max_batch, batch_cost)
    return [order[a:b] for a, b in zip(cuts, cuts[1:])]


def _greedy_cuts(sizes: Sequence[int], batch_tokens: int, max_batch: int) -> list[int]:
    """Start positions of the batches (and len(sizes)) for sizes sorted longest first."""
    cuts = [0]
    for k in range(1, len(sizes)):
        n = k - cuts[-1] + 1  # the batch's size with example k in it
        if n * sizes[cuts[-1]] > batch_tokens or n > max_batch:
            cuts.append(k)
    return cuts + [len(sizes)] if sizes else [0]


def _cheapest_cuts(sizes: Sequence[int], batch_tokens: int, max_batch: int, batch_cost: int) -> list[int]:
    """The cuts minimising sum(len(batch) x longest + batch_cost) for sizes sorted longest first.

    best[j]: the least cost of the first j examples; a batch [i, j) costs (j - i) x sizes[i]. Each j
    looks back over at most ``max_batch`` starts, vectorised: O(n x max_batch) in numpy.
    """
    n = len(sizes)
    s = np.asarray(sizes, dtype=np.float64)
    best = np.zeros(n + 1)
    start = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        i = np.arange(max(0, j - max_batch), j)
        padded = (j - i) * s[i]
        cost = best[i] + padded + batch_cost
        cost[(padded > batch_tokens) & (i < j - 1)] = np.inf  # over budget, unless alone
        k = int(np.argmin(cost))  # ties: the earliest start, i.e. the larger batch
        best[j], start[j] = cost[k], i[k]
    cuts = [n]
    while cuts[-1] > 0:
        cuts.append(int(start[cuts[-1]]))
    return cuts[::-1]


#: ``plan_batches``' cost of one more batch on a CPU, in padded tokens: about what the fixed work of a
#: forward pass (dispatching some 400 operators, the lm_head chunks, small-matrix inefficiency) costs
#: against its per-token work, measured on SmolLM2-135M (benchmarks/RESULTS.md, issue 17).
CPU_BATCH_COST = 128


def batch_cost_for(device: Any) -> int | None:
    """The ``plan_batches`` batch cost that ``score_losses`` uses on ``device``: CPU_BATCH_COST on a CPU,
    None (fill every batch to the budget) elsewhere."""
    import torch

    return CPU_BATCH_COST if torch.device(device).type == "cpu" else None


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
    if is_right_padded(attention_mask):
        # In a causal LM a real token attends only to the positions before it, which right padding
        # leaves real: the causal mask alone is exact for every scored position, and without a
        # padding mask SDPA takes its causal kernel (it skips the upper triangle; with a mask it
        # computes it and adds the mask). Padded positions compute garbage that nothing reads.
        attention_mask = None
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


def is_right_padded(attention_mask: Any) -> bool:
    """True when every row of ``attention_mask`` (int (b, t)) is ones followed by zeros."""
    import torch

    n = attention_mask.sum(dim=1, keepdim=True)
    return bool(torch.equal(attention_mask.bool(), torch.arange(attention_mask.shape[1],
                                                                  device=attention_mask.device) < n))


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
                         what: str = "a", batch_cost: int | None = None) -> None:
    """Call ``run_batch(indices)`` over ``plan_batches(lengths, batch_tokens, batch_cost=batch_cost)``,
    surviving out-of-memory.

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
            for batch in plan_batches([lengths[i] for i in remaining], budget, batch_cost=batch_cost):
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


def _scoring_pass(model: Any, encoded: Sequence[Encoded], reduce: Callable[[list[int], Any, Any], None], *,
                  pad_id: int, batch_tokens: int, device: Any,
                  on_batch: Callable[[int, int], None] | None) -> np.ndarray:
    """One eval-mode pass over the untruncated examples, in batches of at most ``batch_tokens``
    padded tokens: ``reduce(indices, losses, rows)`` gets each batch's per-token losses
    (``batch_token_losses``: float32 (m,), with their row in the batch). Returns the truncated mask."""
    trunc = np.array([e.truncated for e in encoded], dtype=bool)
    todo = [i for i in range(len(encoded)) if not trunc[i]]
    if device is None:
        device = next(model.parameters()).device

    def run_batch(batch: list[int]) -> None:
        idx = [todo[b] for b in batch]
        ids, att, tgt = collate([encoded[i] for i in idx], pad_id, device)
        losses, rows = batch_token_losses(model, ids, att, tgt)
        reduce(idx, losses, rows)
        if on_batch is not None:
            on_batch(len(idx), int(att.sum()))

    with evaluating(model):
        batched_with_backoff([encoded[i].n_tokens for i in todo], batch_tokens, run_batch, what="a scoring",
                             batch_cost=batch_cost_for(device))
        if on_batch is not None and trunc.any():
            on_batch(int(trunc.sum()), 0)
    return trunc


def score_losses(model: Any, encoded: Sequence[Encoded], *, pad_id: int,
                 batch_tokens: int = DEFAULT_BATCH_TOKENS, device: Any = None,
                 on_batch: Callable[[int, int], None] | None = None) -> LossResult:
    """Per-example mean loss over scored tokens, in eval mode.

    encoded: the examples; row i of the result belongs to encoded[i].
    batch_tokens: padded tokens per batch (batch size x longest example).
    on_batch(n_examples, n_tokens): called after each batch (progress bars).
    """
    import torch

    loss = np.full(len(encoded), np.nan, dtype=np.float64)

    def mean(idx: list[int], losses: Any, rows: Any) -> None:
        sums = torch.zeros(len(idx), dtype=torch.float64, device=losses.device)
        sums.index_add_(0, rows, losses.double())
        counts = torch.bincount(rows, minlength=len(idx)).double()
        loss[idx] = (sums / counts).cpu().numpy()

    trunc = _scoring_pass(model, encoded, mean, pad_id=pad_id, batch_tokens=batch_tokens, device=device,
                          on_batch=on_batch)
    return LossResult(loss, np.array([e.n_tokens for e in encoded], dtype=np.int64),
                      np.array([e.n_response_tokens for e in encoded], dtype=np.int64), trunc)


def score_top_losses(model: Any, encoded: Sequence[Encoded], fraction: float, *, pad_id: int,
                     batch_tokens: int = DEFAULT_BATCH_TOKENS, device: Any = None,
                     on_batch: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per example, the mean loss (nats) of its ``fraction`` highest-loss scored tokens (at least one:
    ``max(1, floor(fraction * T))`` of its T), and its highest token loss; float64 (n,) each, NaN
    where truncated. Row i belongs to encoded[i]; the batching is ``score_losses``'s.
    """
    top = np.full(len(encoded), np.nan, dtype=np.float64)
    highest = np.full(len(encoded), np.nan, dtype=np.float64)

    def top_mean(idx: list[int], losses: Any, rows: Any) -> None:
        counts = np.bincount(rows.cpu().numpy(), minlength=len(idx))
        # the scored positions come in row-major order, so each example's losses are one slice
        for j, part in enumerate(np.split(losses.double().cpu().numpy(), np.cumsum(counts)[:-1])):
            part = np.sort(part)[::-1]
            top[idx[j]] = part[:max(1, int(fraction * len(part)))].mean()
            highest[idx[j]] = part[0]

    _scoring_pass(model, encoded, top_mean, pad_id=pad_id, batch_tokens=batch_tokens, device=device,
                  on_batch=on_batch)
    return top, highest


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
