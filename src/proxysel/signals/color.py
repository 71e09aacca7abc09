"""``color``: CoLoR-Filter's conditional loss reduction (Brandfonbrener et al., NeurIPS 2024).

    color(x) = loss_prior(x) - loss_conditional(x)

- the *prior* is the proxy as given (or after ``train-proxy`` on the pool);
- the *conditional* model is the prior fine-tuned on the reference set (the downstream data)
  with the training loop every proxysel model trains with (``dynamics.train.fine_tune``);
- ``loss`` is each example's **mean** cross-entropy over its response tokens, the ``loss``
  signal of ``engine.score_losses``. A large reduction means the reference set made the example
  much more likely: it looks like what the user wants.

Mean, not sum, because the official scorer takes the mean: ``olmo/score.py`` computes per-token
losses (``loss_reduction="none"``) and keeps ``loss.mean(dim=-1)`` per sequence, and
``scripts/select_index_np.py`` ranks ``prior - conditional`` of those means
(davidbrandfonbrener/color-filter-olmo). Its sequences are fixed-length C4 chunks, where mean and
sum rank alike; instruction examples differ in length, and a summed reduction would grow with
the response length and prefer long examples for their length alone. The two per-example losses
are kept, and ``n_response_tokens`` is in the loss table, so the sum can be recovered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from proxysel.data.example import Example
from proxysel.engine import LossResult
from proxysel.models.render import Encoded

__all__ = ["COLUMNS", "color_losses", "color_scores", "fine_tune_conditional"]

#: The columns ``color_scores`` returns: the score and the two losses it is the difference of.
COLUMNS = ("color", "color_loss_prior", "color_loss_conditional")


def fine_tune_conditional(lm: Any, renderer: Any, reference_examples: Sequence[Example], config: Any,
                          state_dir: str | Path) -> Any:
    """The conditional model: a copy of the prior ``lm.model`` fine-tuned on ``reference_examples``.

    lm: the prior (a LoadedModel), left as it is; load it in float32 (``config.dtype`` chooses
    bf16 autocast), as ``benchmarking.target`` does for its targets. renderer: renders the
    reference examples exactly as the pool is rendered. config: a ``dynamics.train.TrainConfig``
    (epochs, lr, batch, LoRA; ``checkpoints`` is not used). state_dir: the resumable training
    state; a rerun after an interruption continues from the last epoch saved, and one after the
    end loads the final weights. Returns the fine-tuned copy, in eval mode.
    """
    import copy

    from proxysel.dynamics.train import fine_tune

    model = copy.deepcopy(lm.model)
    encoded = [renderer.encode(e) for e in reference_examples]
    fine_tune(model, encoded, pad_id=lm.tokenizer.pad_token_id, config=config, state_dir=state_dir,
              max_length_name=f"max_length {renderer.max_length} (reference set)")
    return model.eval()


def color_scores(prior: LossResult, conditional: LossResult) -> dict[str, np.ndarray]:
    """The CoLoR-Filter columns from the two scoring passes over the same encoded examples.

    prior, conditional: ``engine.score_losses`` results (mean response-token loss, nats, float64
    (n,), NaN where truncated). Returns float64 (n,) arrays: ``color`` = prior - conditional
    (larger = the reference set helped more), ``color_loss_prior``, ``color_loss_conditional``.
    """
    if len(prior.loss) != len(conditional.loss) or not np.array_equal(prior.n_response_tokens,
                                                                       conditional.n_response_tokens):
        raise ValueError("color: the prior and conditional losses are not over the same encoded examples "
                         f"({len(prior.loss)} and {len(conditional.loss)} rows, or other response tokens)")
    p = np.asarray(prior.loss, dtype=np.float64)
    c = np.asarray(conditional.loss, dtype=np.float64)
    return {"color": p - c, "color_loss_prior": p.copy(), "color_loss_conditional": c.copy()}


def color_losses(prior_model: Any, conditional_model: Any, encoded: Sequence[Encoded], *, pad_id: int,
                 batch_tokens: int = 8192) -> dict[str, np.ndarray]:
    """Score ``encoded`` with both models (``engine.score_losses``) and return ``color_scores``."""
    from proxysel.engine import score_losses

    prior = score_losses(prior_model, encoded, pad_id=pad_id, batch_tokens=batch_tokens)
    conditional = score_losses(conditional_model, encoded, pad_id=pad_id, batch_tokens=batch_tokens)
    return color_scores(prior, conditional)
