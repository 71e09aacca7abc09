"""``mink``: Min-K% Prob of the response tokens (Shi et al., ICLR 2024), and the highest token loss.

Source: *Detecting Pretraining Data from Large Language Models*. Official code:
``swj0419/detect-pretrain-code`` (``src/run.py``): the per-token log-probabilities of a text are
sorted, the ``k_length = int(len(all_prob) * ratio)`` lowest are averaged, and the score is minus
that mean, ``ratio = 0.2`` in the paper's results. Here, as a loss:

    mink(x)           = mean of the max(1, floor(0.2 T)) highest response-token losses (nats)
    max_token_loss(x) = the highest response-token loss (nats): the same with one token

over the T response tokens that ``loss`` scores (the same rendering, model and truncation). Two
differences from the official code, both for short answers: the official rounding takes no token
below 5 tokens (its mean is then NaN), and it scores every token of a text; proxysel takes at least
one token, and scores the response only, like every loss signal here.

Why it is here: the mean response loss (``loss``, ``ppl``) dilutes one wrong token among right ones.
An answer with one wrong digit or word has one very surprising token, which the highest losses keep
(benchmarks/RESULTS.md measures both as noise detectors on the skewed bench).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from proxysel.engine import score_top_losses
from proxysel.signals.base import Signal, register_signal

#: the share of response tokens averaged (the paper's k = 20%)
MINK_FRACTION = 0.2


@register_signal("mink")
class MinKSignal(Signal):
    """Mean loss (nats) of the 20% highest-loss response tokens of ``score.model`` (at least one), and
    the highest one."""

    columns = ("mink", "max_token_loss")
    needs = ("response",)

    def setup(self, device: str | None) -> Any:
        return self.load_lm_and_renderer(device)

    def compute(self, state: Any, examples: list, bar: Any) -> Any:
        lm, renderer = state
        encoded = [renderer.encode(e) for e in examples]
        top, highest = score_top_losses(lm.model, encoded, MINK_FRACTION, pad_id=lm.tokenizer.pad_token_id,
                                        batch_tokens=self.config.batch_tokens,
                                        on_batch=lambda n, t: bar.update(n, t))
        return pa.table({"id": pa.array([e.id for e in examples], pa.string()),
                         "mink": pa.array(top, pa.float64()),
                         "max_token_loss": pa.array(highest, pa.float64())})
