"""Render an example to text, tokenize it once, and mask everything but the scored tokens.

Prompt and response are tokenized *together* and the labels are then masked by character
spans (via the fast tokenizer's offset mapping): tokenizing them apart gives different tokens
at the boundary than the model sees in training.

Templates:
- ``chat``: the tokenizer's own chat template. The scored span of an assistant turn is its
  content plus the end-of-turn special token that the template puts right after it
  (``<|im_end|>`` for ChatML), so the model is also scored on knowing when to stop.
- ``alpaca``: the Stanford Alpaca template used by the official LP (Small2Large) and S2L code:
  the prompt ends with ``### Response:`` and the target is ``{output}{eos}`` appended directly.
  Later turns of a conversation repeat ``\n\n### Instruction:\n{user}\n\n### Response:``; a
  system message replaces the fixed preamble.
- ``text`` records (pre-training layout) are the raw text, every token scored.

``auto`` (the default) is ``chat`` when the tokenizer has a chat template, else ``alpaca``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxysel.data.example import Example
from proxysel.errors import BadInputError, UsageError
from proxysel.options import DEFAULT_MAX_LENGTH

IGNORE = -100

ALPACA_PREAMBLE_INPUT = ("Below is an instruction that describes a task, paired with an input that provides "
                         "further context. Write a response that appropriately completes the request.")
ALPACA_PREAMBLE = ("Below is an instruction that describes a task. "
                   "Write a response that appropriately completes the request.")
TEMPLATES = ("auto", "chat", "alpaca")


@dataclass(frozen=True)
class Encoded:
    """One tokenized example.

    input_ids: token ids, at most ``max_length`` long (truncated on the right).
    labels:    same length; the token id where it is scored, -100 elsewhere. Position 0 is never
               scored (nothing predicts it).
    n_tokens:  len(input_ids) after truncation.
    n_response_tokens: number of scored tokens after truncation.
    truncated: True when truncation left no scored token; the example's signals are then NaN.
    """

    input_ids: list[int]
    labels: list[int]
    n_tokens: int
    n_response_tokens: int
    truncated: bool


class Renderer:
    """Turns examples into ``Encoded`` for one tokenizer.

    >>> r = Renderer(tokenizer, max_length=512)
    >>> enc = r.encode(example)
    """

    def __init__(self, tokenizer: Any, max_length: int = DEFAULT_MAX_LENGTH, template: str = "auto",
                 end_of_turn: bool = True) -> None:
        if template not in TEMPLATES:
            raise UsageError(f"--template must be one of {TEMPLATES}, got {template!r}")
        if max_length < 2:
            raise UsageError(f"--max-length must be >= 2, got {max_length}")
        if not getattr(tokenizer, "is_fast", False):
            raise UsageError("proxysel needs a fast (Rust) tokenizer for offset mapping; this model's "
                             "tokenizer is a slow one")
        self.tokenizer = tokenizer
        self.max_length = max_length
        # Score the end-of-turn token after each response (training and LP/S2L do); IFD compares
        # the response's own tokens with and without the instruction, so it turns this off.
        self.end_of_turn = end_of_turn
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if template == "chat" and not has_chat:
            raise UsageError("--template chat: this tokenizer has no chat template; use alpaca")
        self.template = ("chat" if has_chat else "alpaca") if template == "auto" else template
        eos = tokenizer.eos_token
        self.eos = eos if isinstance(eos, str) else ""
        self._specials = sorted({t for t in tokenizer.all_special_tokens if t}, key=len, reverse=True)

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Where a generated answer ends besides the end-of-turn token: the Alpaca template's own
        section headers, which a base model that has not learned to emit EOS goes on to write
        (``...answer\n\n### Response:...``). A chat template ends its turns with a special token."""
        if self.template == "alpaca":
            return ("\n\n### Instruction:", "\n\n### Input:", "\n\n### Response:")
        return ()

    # -- rendering: text plus the character spans that are scored ------------------------------
    def render(self, example: Example) -> tuple[str, list[tuple[int, int]], bool]:
        """Return (text, scored character spans, add_special_tokens)."""
        if example.is_text:
            text = example.messages[0].content
            return text, [(0, len(text))], True
        if self.template == "chat":
            return self._render_chat(example)
        return self._render_alpaca(example)

    def _apply_template(self, example: Example, msgs: list[dict[str, str]], **kwargs: Any) -> str:
        try:
            return self.tokenizer.apply_chat_template(msgs, tokenize=False, **kwargs)
        except Exception as e:  # the template's own raise_exception ("roles must alternate", ...)
            raise BadInputError(example.file, f"example {example.id!r}: the model's chat template refuses "
                                f"this conversation ({type(e).__name__}: {e}); fix the record, or score with "
                                "--template alpaca", line=example.line or None) from None

    def _render_chat(self, example: Example) -> tuple[str, list[tuple[int, int]], bool]:
        msgs = [{"role": m.role, "content": m.content} for m in example.messages]
        text = self._apply_template(example, msgs)
        spans: list[tuple[int, int]] = []
        cursor = 0
        for i, m in enumerate(example.messages):
            if m.role != "assistant":
                continue
            # The conversation up to this turn, with the generation prompt, is a prefix of the full
            # rendering for well-behaved templates: start looking for the content right after it,
            # so that text repeated earlier (say, in a system prompt) is never matched.
            prefix = self._apply_template(example, msgs[:i], add_generation_prompt=True) if i else ""
            if prefix and text.startswith(prefix):
                cursor = max(cursor, len(prefix))
            content = m.content
            start = text.find(content, cursor)
            if start < 0:  # some templates trim the content
                content = m.content.strip()
                start = text.find(content, cursor)
            if start < 0:
                raise BadInputError(example.file, f"example {example.id!r}: the model's chat template does "
                                    f"not render assistant turn {i} verbatim (it drops or rewrites the "
                                    "response), so its tokens cannot be scored; use --template alpaca",
                                    line=example.line or None, field=_response_field(example, i))
            end = start + len(content)
            for tok in self._specials if self.end_of_turn else ():
                if text.startswith(tok, end):
                    end += len(tok)
                    break
            spans.append((start, end))
            cursor = end
        return text, spans, False

    def _render_alpaca(self, example: Example) -> tuple[str, list[tuple[int, int]], bool]:
        parts: list[str] = []
        spans: list[tuple[int, int]] = []
        msgs = list(example.messages)
        system = None
        if msgs and msgs[0].role == "system":
            system = msgs.pop(0).content
        fields = example.alpaca
        pos = 0

        def add(s: str, scored: bool = False) -> None:
            nonlocal pos
            if scored:
                spans.append((pos, pos + len(s)))
            parts.append(s)
            pos += len(s)

        first_user = True
        for m in msgs:
            if m.role == "user":
                if first_user:
                    if fields is not None and fields[1].strip():
                        add(f"{system or ALPACA_PREAMBLE_INPUT}\n\n### Instruction:\n{fields[0]}"
                            f"\n\n### Input:\n{fields[1]}\n\n### Response:")
                    else:
                        instruction = fields[0] if fields is not None else m.content
                        add(f"{system or ALPACA_PREAMBLE}\n\n### Instruction:\n{instruction}\n\n"
                            "### Response:")
                    first_user = False
                else:
                    add(f"\n\n### Instruction:\n{m.content}\n\n### Response:")
            elif m.role == "assistant":
                add(m.content + self.eos if self.end_of_turn else m.content, scored=True)
                if not self.end_of_turn:
                    add(self.eos)
        return "".join(parts), spans, True

    # -- tokenization and masking --------------------------------------------------------------
    def encode(self, example: Example) -> Encoded:
        text, spans, add_special = self.render(example)
        return self.encode_spans(text, spans, add_special)

    def encode_text(self, text: str) -> Encoded:
        """Every token of ``text`` scored: the unconditioned pass of IFD and the ``text`` layout."""
        return self.encode_spans(text, [(0, len(text))], True)

    def encode_spans(self, text: str, spans: list[tuple[int, int]], add_special_tokens: bool) -> Encoded:
        enc = self.tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True,
                             truncation=False)
        ids: list[int] = list(enc["input_ids"])
        offsets = enc["offset_mapping"]
        labels = [IGNORE] * len(ids)
        spans = sorted(spans)
        j = 0
        for t, (s, e) in enumerate(offsets):
            if e <= s:  # special tokens added by the tokenizer (bos) have empty offsets
                continue
            while j < len(spans) and spans[j][1] <= s:
                j += 1
            if j < len(spans) and spans[j][0] <= s < spans[j][1]:
                labels[t] = ids[t]
        if labels:  # an empty text (a text record's IFD response) has no token at all
            labels[0] = IGNORE  # nothing predicts the first token
        ids, labels = ids[: self.max_length], labels[: self.max_length]
        n_resp = sum(1 for x in labels if x != IGNORE)
        return Encoded(ids, labels, len(ids), n_resp, n_resp == 0)


def _response_field(example: Example, turn: int) -> str:
    """The record field that holds assistant turn ``turn`` (for messages; before any --columns)."""
    return {"alpaca": "output", "prompt-completion": "completion", "messages": f"messages[{turn}].content",
            "sharegpt": f"conversations[{turn}].value"}.get(example.format, f"turn {turn}")
