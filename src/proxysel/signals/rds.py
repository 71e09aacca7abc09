"""``rds``: RDS+ embeddings, position-weighted mean pooling of the proxy's last hidden states.

RDS+ (Ivison et al. 2025, *Large-Scale Data Selection for Instruction Tuning*) represents every
example, pool and reference alike, by one vector of the proxy model, and selects by cosine
similarity (``proxysel.selectors.rds``). What the official code computes
(hamishivi/automated-instruction-selection, ``minimal_multitask/compute_influence_cosinesim.py``
with ``--pooling weighted_mean``, the setting of every RDS+ command in its README):

- *Which tokens*: every token of the example, prompt and response together: the input is the
  whole conversation as ``encode_with_messages_format`` (``minimal_multitask/utils.py``) renders
  and tokenizes it, and the pooling runs over all its positions, not over the labels. Here: every
  token of ``Renderer.encode(example)``, i.e. the chat template (or Alpaca) rendering, cut at
  ``max_length`` like every other signal.
- *Which states*: ``output_hidden_states=True`` and ``hidden_states[-1]``, the last layer after
  the final norm (the same tensor as the backbone's ``last_hidden_state``).
- *Which weights* (lines 132-138, "we follow SGPT", Muennighoff 2022): position ``j = 1..T``
  weighs ``j / (1 + 2 + ... + T) = 2j / (T (T + 1))``, so later tokens, which have seen more of
  the example, count more.
- *Normalised*: every embedding is divided by its L2 norm (lines 145 and 175), so a dot product
  is the cosine similarity.

The official script runs at batch size 1 (``--batch_size 1`` in the README); its weights span
the padded length, so padding would change them. Here padding has weight 0 and the weights
span each example's own tokens: any batch gives the batch-size-1 result.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

from proxysel.data.example import Pool
from proxysel.engine import backbone_and_head, batched_with_backoff, collate, evaluating
from proxysel.models.render import Encoded
from proxysel.options import DEFAULT_BATCH_TOKENS
from proxysel.signals.base import Signal, register_signal

__all__ = ["RdsSignal", "position_weights", "rds_embed"]


def position_weights(attention_mask: Any) -> Any:
    """SGPT position weights of a right-padded batch: float32 (b, t), row i is
    ``j / sum(1..T_i)`` at its positions ``j = 1..T_i`` and 0 on its padding."""
    import torch

    mask = attention_mask.to(torch.float32)
    positions = torch.cumsum(mask, dim=1) * mask
    return positions / positions.sum(dim=1, keepdim=True).clamp_min(1.0)


def rds_embed(model: Any, encoded: Sequence[Encoded], *, pad_id: int,
              batch_tokens: int = DEFAULT_BATCH_TOKENS, device: Any = None,
              on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
    """RDS+ embeddings of ``encoded``: float32 (n, hidden), unit L2 norm; row i belongs to encoded[i].

    Position-weighted mean (see the module docstring) of the last hidden states over all tokens
    of the example, in eval mode. Batches are formed over examples sorted by length under
    ``batch_tokens`` padded tokens, as in ``engine.score_losses``. An example with no token (none
    reach here from the Renderer) gets a row of NaN.
    on_batch(n_examples, n_tokens): called after each batch (progress bars).
    """
    import torch

    n = len(encoded)
    base, _, _ = backbone_and_head(model)
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    out = np.full((n, config.hidden_size), np.nan, dtype=np.float32)
    todo = [i for i in range(n) if encoded[i].n_tokens > 0]
    if device is None:
        device = next(model.parameters()).device

    def run_batch(batch: list[int]) -> None:
        idx = [todo[b] for b in batch]
        ids, att, _ = collate([encoded[i] for i in idx], pad_id, device)
        hidden = base(input_ids=ids, attention_mask=att, use_cache=False).last_hidden_state.float()
        pooled = torch.einsum("bt,btd->bd", position_weights(att), hidden)
        pooled = pooled / torch.linalg.vector_norm(pooled, dim=1, keepdim=True)
        out[idx] = pooled.cpu().numpy()
        if on_batch is not None:
            on_batch(len(idx), int(att.sum()))

    with evaluating(model):
        batched_with_backoff([encoded[i].n_tokens for i in todo], batch_tokens, run_batch, what="an RDS")
    return out


@register_signal("rds")
class RdsSignal(Signal):
    """RDS+ vectors of ``score.model`` for the pool (vector set ``rds``) and, with a reference set, for
    the reference (``rds_reference``): the pool's are kept and reused when the reference changes."""

    columns = ("rds",)
    vectors = True
    reference_vectors = True
    needs_reference = True

    def fingerprint(self, pool: Pool, upstream: dict[str, Any]) -> dict[str, Any]:
        fp = super().fingerprint(pool, upstream)
        fp.pop("reference", None)  # the pool's vectors do not depend on the reference set
        return {**fp, "pooling": "weighted_mean"}

    def setup(self, device: str | None) -> Any:
        return self.load_lm_and_renderer(device)

    def compute(self, state: Any, examples: list, bar: Any) -> Any:
        lm, renderer = state
        vecs = rds_embed(lm.model, [renderer.encode(e) for e in examples], pad_id=lm.tokenizer.pad_token_id,
                         batch_tokens=self.config.batch_tokens, on_batch=lambda n, t: bar.update(n, t))
        flat = pa.array(vecs.reshape(-1), pa.float32())
        return pa.table({"id": pa.array([e.id for e in examples], pa.string()),
                         "rds": pa.FixedSizeListArray.from_arrays(flat, vecs.shape[1])})
