"""``ifd`` and ``ifd_loss``: Instruction-Following Difficulty (Superfiltering / Cherry_LLM).

    ifd      = P(A | Q) / P(A)          perplexity ratio (Superfiltering, Li et al. 2024)
    ifd_loss = loss(A | Q) / loss(A)    loss ratio (Cherry_LLM's ``ifd_loss``)

What each pass sees, exactly:
- conditioned, ``loss(A | Q)``: the example rendered as for ``loss`` (chat or Alpaca template),
  scored on the response tokens only, *without* the end-of-turn token, so both passes score
  the same text;
- unconditioned, ``loss(A)``: the response text alone (all assistant turns joined by a blank
  line), tokenized on its own with the tokenizer's special tokens (BOS where it adds one), every
  token scored but the first, which nothing predicts when there is no BOS. This follows the
  official code, which tokenizes the bare output and uses it as its own labels.
Both are truncated at ``--max-length``. An example with no scored token in either pass is
``truncated`` and gets NaN. IFD >= 1 means the instruction does not help; the Superfiltering
selector drops those.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from proxysel.data.text import response_text
from proxysel.engine import score_losses
from proxysel.signals.base import Signal, register_signal


@register_signal("ifd")
class IFDSignal(Signal):
    """``ifd`` and ``ifd_loss`` of ``score.model``: the response scored with and without its prompt."""

    columns = ("ifd", "ifd_loss", "ifd_cond_loss", "ifd_resp_loss")
    needs = ("prompt", "response")

    def setup(self, device: str | None) -> Any:
        return self.load_lm_and_renderer(device, end_of_turn=False)

    def compute(self, state: Any, examples: list, bar: Any) -> Any:

        lm, r = state
        pad, batch_tokens = lm.tokenizer.pad_token_id, self.config.batch_tokens
        cond = score_losses(lm.model, [r.encode(e) for e in examples], pad_id=pad, batch_tokens=batch_tokens,
                            on_batch=lambda n, t: bar.update(0, t))
        alone = score_losses(lm.model, [r.encode_text(response_text(e)) for e in examples], pad_id=pad,
                             batch_tokens=batch_tokens, on_batch=lambda n, t: bar.update(n, t))
        with np.errstate(divide="ignore", invalid="ignore"):
            ifd = np.exp(cond.loss - alone.loss)  # = P(A|Q) / P(A), without overflow
            ifd_loss = cond.loss / alone.loss
        return pa.table({
            "id": pa.array([e.id for e in examples], pa.string()),
            "ifd": pa.array(ifd, pa.float64()),
            "ifd_loss": pa.array(ifd_loss, pa.float64()),
            "ifd_cond_loss": pa.array(cond.loss, pa.float64()),
            "ifd_resp_loss": pa.array(alone.loss, pa.float64()),
        })
