"""``loss``: per-example mean response-token loss (nats) of the proxy, and ``ppl = exp(loss)``."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from proxysel.engine import score_losses
from proxysel.signals.base import Signal, register_signal


def loss_table(ids: list[str], result: Any) -> Any:
    """An arrow table of the loss columns; row i belongs to ids[i]."""
    return pa.table({
        "id": pa.array(ids, pa.string()),
        "n_tokens": pa.array(result.n_tokens, pa.int64()),
        "n_response_tokens": pa.array(result.n_response_tokens, pa.int64()),
        "truncated": pa.array(result.truncated, pa.bool_()),
        "loss": pa.array(result.loss, pa.float64()),
        "ppl": pa.array(result.ppl, pa.float64()),
    })


@register_signal("loss")
class LossSignal(Signal):
    """Mean response-token loss (nats) of ``score.model`` per example, and ``ppl = exp(loss)``."""

    columns = ("loss", "ppl", "n_tokens", "n_response_tokens", "truncated")
    needs = ("response",)

    def setup(self, device: str | None) -> Any:
        return self.load_lm_and_renderer(device)

    def compute(self, state: Any, examples: list, bar: Any) -> Any:
        lm, renderer = state
        res = score_losses(lm.model, [renderer.encode(e) for e in examples], pad_id=lm.tokenizer.pad_token_id,
                           batch_tokens=self.config.batch_tokens, on_batch=lambda n, t: bar.update(n, t))
        return loss_table([e.id for e in examples], res)
