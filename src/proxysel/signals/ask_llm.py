"""``ask_llm``: P("yes") of an instruction-tuned judge asked whether an example is worth training on.

Sachdeva et al. 2024 (How to Train Data-Efficient LLMs). The prompt is the paper's, verbatim
(``PROMPT``), with ``{example}`` the example as plain text (``conversation_text``: turns as
``Role: content``). The score is the judge's next-token probability, over its full vocabulary,
of "yes", summed over the case and leading-space variants of "yes" that are single tokens of
its vocabulary. The probabilities of every yes and no variant are stored in ``ask_llm_detail``
(JSON) for audit.

With a chat template the prompt is the user turn and the generation prompt follows; without
one the prompt is followed by ``\\nAnswer:``. An example too long for ``--max-length`` is cut
(its tokens, from the right) so that the question always fits.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pyarrow as pa

from proxysel.data.example import Pool
from proxysel.data.text import conversation_text
from proxysel.engine import backbone_and_head, batched_with_backoff
from proxysel.errors import UsageError
from proxysel.signals.base import Signal, register_signal

PROMPT = """###
{example}
###

Does the previous paragraph demarcated within ### and ### contain informative signal for pre-training a large-language model? An informative datapoint should be well-formatted, contain some usable knowledge of the world, and strictly NOT have any harmful, racist, sexist, etc. content.

OPTIONS:
- yes
- no"""  # noqa: E501  (the paper's prompt, verbatim)

ANSWER_SUFFIX = "\nAnswer:"

log = logging.getLogger(__name__)


def answer_tokens(tokenizer: Any, word: str) -> dict[str, int]:
    """Single-token variants of ``word`` (case x leading space) -> token id."""
    out: dict[str, int] = {}
    for w in (word.lower(), word.capitalize(), word.upper()):
        for v in (w, " " + w):
            ids = tokenizer.encode(v, add_special_tokens=False)
            if len(ids) == 1:
                out[v] = ids[0]
    return out


def judge_prompt_ids(tokenizer: Any, prompt: str, *, reply_prefix: str = "",
                     plain_suffix: str = ANSWER_SUFFIX) -> list[int]:
    """The ids a judge reads for ``prompt``: with a chat template, ``prompt`` as the user turn, the
    generation prompt, then ``reply_prefix`` (the start of the judge's own reply); without one,
    ``prompt + plain_suffix`` with the tokenizer's special tokens (BOS)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return tokenizer(text + reply_prefix, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt + plain_suffix, add_special_tokens=True)["input_ids"]


def cut_to_tokens(tokenizer: Any, text: str, budget: int) -> str:
    """``text``, or its first ``budget`` tokens decoded back to text when it is longer."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= budget else tokenizer.decode(ids[:budget])


class JudgePrompter:
    """Builds the judge's input ids for an example."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tok = tokenizer
        self.max_length = max_length
        # Token cost of the prompt around the example, measured with an empty example.
        self.overhead = len(self._ids(""))

    def _ids(self, example_text: str) -> list[int]:
        return judge_prompt_ids(self.tok, PROMPT.format(example=example_text))

    def ids(self, example_text: str) -> list[int]:
        budget = max(self.max_length - self.overhead - 2, 1)
        return self._ids(cut_to_tokens(self.tok, example_text, budget))


def next_token_probs(model: Any, batch_ids: list[list[int]], pad_id: int) -> Any:
    """Softmax over the vocabulary at the last position of each sequence: float32 (b, vocab)."""
    import torch

    base, head, cap = backbone_and_head(model)
    t = max(len(x) for x in batch_ids)
    ids = torch.full((len(batch_ids), t), pad_id, dtype=torch.long)
    att = torch.zeros_like(ids)
    for r, x in enumerate(batch_ids):
        ids[r, : len(x)] = torch.tensor(x)
        att[r, : len(x)] = 1
    dev = next(model.parameters()).device
    hidden = base(input_ids=ids.to(dev), attention_mask=att.to(dev), use_cache=False).last_hidden_state
    last = hidden[torch.arange(len(batch_ids), device=dev), att.sum(1).to(dev) - 1]
    logits = head(last).float()
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return torch.softmax(logits, dim=-1)


@register_signal("ask_llm")
class AskLLMSignal(Signal):
    """P("yes") of ``score.judge`` asked the paper's question about every example."""

    columns = ("ask_llm", "ask_llm_detail")
    model_option = "judge"

    def fingerprint(self, pool: Pool, upstream: dict[str, Any]) -> dict[str, Any]:
        return {**super().fingerprint(pool, upstream), "prompt": PROMPT}

    def setup(self, device: str | None) -> Any:
        lm = self.load_lm(device)
        yes, no = answer_tokens(lm.tokenizer, "yes"), answer_tokens(lm.tokenizer, "no")
        if not yes:
            raise UsageError(f"judge {self.model}: no variant of 'yes' is a single token of its vocabulary")
        return lm, JudgePrompter(lm.tokenizer, self.config.max_length), yes, no

    def compute(self, state: Any, examples: list, bar: Any) -> Any:
        import torch

        lm, prompter, yes, no = state
        all_ids = [prompter.ids(conversation_text(e)) for e in examples]
        score = np.full(len(examples), np.nan)
        detail: list[str] = [""] * len(examples)

        def run_batch(idx: list[int]) -> None:
            probs = next_token_probs(lm.model, [all_ids[i] for i in idx], lm.tokenizer.pad_token_id).cpu()
            for row, i in enumerate(idx):
                p = {k: float(probs[row, v]) for k, v in {**yes, **no}.items()}
                score[i] = float(sum(probs[row, v] for v in yes.values()))
                detail[i] = json.dumps(p, sort_keys=True)
            bar.update(len(idx), sum(len(all_ids[i]) for i in idx))

        with torch.inference_mode():
            batched_with_backoff([len(x) for x in all_ids], self.config.batch_tokens, run_batch,
                                 what="an ask_llm")
        return pa.table({
            "id": pa.array([e.id for e in examples], pa.string()),
            "ask_llm": pa.array(score, pa.float64()),
            "ask_llm_detail": pa.array(detail, pa.string()),
        })
