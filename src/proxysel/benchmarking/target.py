"""Train a target on one subset with the bench's fixed recipe, and measure it on the eval set.

Training is the proxy's own loop (``proxysel.dynamics.train.train``): same optimizer, schedule,
loss normalisation and data order rules, with no scoring passes (the ``evaluate`` hook does
nothing) and no trajectory. The eval measures, per example (``analysis.ExampleArrays``) and
from those per group, pooled and macro (``analysis.example_metrics``):

- ``eval_loss``: mean cross-entropy (nats) over *all* response tokens of the eval set
  (token-weighted, so a long answer counts by its tokens), from ``engine.score_losses``;
  ``eval_loss_macro``: the unweighted mean over groups of each group's token-weighted loss;
- ``eval_loss_example``: the mean over examples of each example's mean token loss;
- ``exact_match``: the share of eval examples whose greedy continuation of the prompt
  (the chat template's generation prompt, or the Alpaca ``### Response:``), decoded up to the
  end-of-turn token (or, for Alpaca, the next ``### Instruction:/Input:/Response:`` header) and
  stripped, equals the stripped reference answer; ``exact_match_macro`` over groups.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from proxysel.benchmarking.analysis import ExampleArrays, example_metrics
from proxysel.benchmarking.ledger import model_params
from proxysel.data.example import Example
from proxysel.dynamics.train import fine_tune
from proxysel.engine import evaluating, score_losses
from proxysel.models.loader import load_causal_lm
from proxysel.models.render import Renderer
from proxysel.options import DEFAULT_BATCH_TOKENS, TrainProxyConfig, TrainRecipe


@dataclass
class Trained:
    """A target after training. n_params: the ledger's N of the model as loaded (before any LoRA
    adapters; ``ledger.model_params``). tokens_trained: input tokens of every optimizer step (the
    training log's, steps of an interrupted earlier process included)."""

    lm: Any  # LoadedModel
    renderer: Any
    steps: int
    epochs: int
    n_train: int
    seconds: float
    train_loss_last: float | None
    n_params: int = 0
    tokens_trained: int = 0


def steps_for(n_trainable: int, effective_batch: int, epochs: int) -> int:
    return epochs * math.ceil(n_trainable / effective_batch) if n_trainable else 0


def matched_epochs(n_subset: int, n_full: int, effective_batch: int, epochs: int) -> int:
    """Whole epochs of a subset of ``n_subset`` that come nearest the full run's optimizer steps."""
    full = steps_for(n_full, effective_batch, epochs)
    per_epoch = math.ceil(n_subset / effective_batch)
    return max(1, int(round(full / per_epoch)))


def untrained_target(spec: str, recipe: Any, *, device: str | None = None) -> Trained:
    """The target as loaded, before any training (float32, as ``train_target`` starts from): the
    bench's ``base`` row, which shows whether training on any subset helped the held-out loss."""
    lm = load_causal_lm(spec, dtype="float32", device=device or "cpu")
    renderer = Renderer(lm.tokenizer, max_length=recipe.max_length, template=recipe.template)
    return Trained(lm=lm, renderer=renderer, steps=0, epochs=0, n_train=0, seconds=0.0, train_loss_last=None,
                   n_params=model_params(lm.model))


def train_target(spec: str, recipe: Any, examples: Sequence[Example], *, epochs: int, seed: int,
                 state_dir: Path, device: str | None = None,
                 batch_tokens: int = DEFAULT_BATCH_TOKENS) -> Trained:
    """Load ``spec`` fresh, train it on ``examples`` for ``epochs`` with ``recipe`` (a ``TrainRecipe``:
    the bench target's ``ModelRecipe``); no scoring passes, no trajectory."""
    fields = {f.name: getattr(recipe, f.name) for f in dataclasses.fields(TrainRecipe)}
    config = TrainProxyConfig(**{**fields, "model": spec, "epochs": epochs, "seed": seed,
                                 "batch_tokens": batch_tokens}, checkpoints=0)
    base = untrained_target(spec, recipe, device=device)
    lm, renderer = base.lm, base.renderer
    encoded = [renderer.encode(e) for e in examples]
    t0 = time.perf_counter()
    plan, result = fine_tune(lm.model, encoded, pad_id=lm.tokenizer.pad_token_id, config=config,
                             state_dir=state_dir, max_length_name=f"target.max_length {recipe.max_length}")
    last = result.history[-1]["loss"] if result.history else None
    return Trained(lm=lm, renderer=renderer, steps=plan.total_steps, epochs=epochs,
                   n_train=len(plan.trainable), seconds=time.perf_counter() - t0, train_loss_last=last,
                   n_params=base.n_params, tokens_trained=sum(int(h["tokens"]) for h in result.history))


def _reference(example: Example) -> str:
    answers = [m.content for m in example.messages if m.role == "assistant"]
    return answers[-1] if answers else ""


def prompt_of(renderer: Any, example: Example) -> tuple[str, bool]:
    """(the rendered text up to the last answer, add_special_tokens): what the model continues."""
    text, spans, add_special = renderer.render(example)
    return text[: spans[-1][0]] if spans else text, add_special


def cut_at(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first of ``stops`` (all of it when none occurs)."""
    ends = [k for k in (text.find(s) for s in stops) if k >= 0]
    return text[: min(ends)] if ends else text


def greedy_answers(lm: Any, renderer: Any, examples: Sequence[Example], *, max_new_tokens: int,
                   batch_size: int) -> list[str]:
    """Greedy continuations of every example's prompt, decoded up to end-of-turn (or the template's
    next section header, ``Renderer.stop_strings``), stripped."""
    tok, model = lm.tokenizer, lm.model
    device = next(model.parameters()).device
    out: list[str] = [""] * len(examples)
    prompts = [prompt_of(renderer, e) for e in examples]
    order = sorted(range(len(examples)), key=lambda i: len(prompts[i][0]))  # less padding
    side = tok.padding_side
    tok.padding_side = "left"  # generation appends on the right
    try:
        with evaluating(model):
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                add_special = prompts[idx[0]][1]
                enc = tok([prompts[i][0] for i in idx], add_special_tokens=add_special, return_tensors="pt",
                          padding=True)
                gen = model.generate(input_ids=enc["input_ids"].to(device),
                                     attention_mask=enc["attention_mask"].to(device), do_sample=False,
                                     max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                     eos_token_id=tok.eos_token_id)
                new = gen[:, enc["input_ids"].shape[1]:]
                for row, i in zip(new.tolist(), idx):
                    if tok.eos_token_id in row:
                        row = row[: row.index(tok.eos_token_id)]
                    out[i] = cut_at(tok.decode(row, skip_special_tokens=True), renderer.stop_strings).strip()
    finally:
        tok.padding_side = side
    return out


def evaluate_target(trained: Trained, examples: Sequence[Example], *, exact_match: bool, max_new_tokens: int,
                    batch_size: int, batch_tokens: int,
                    groups: Sequence[str]) -> tuple[dict[str, Any], ExampleArrays]:
    """(the eval metrics of ``trained``, its per-example arrays). Metrics: ``analysis.example_metrics``
    (``groups``: one per example), ``samples`` (the first 8 greedy answers, with exact match) and
    ``eval_seconds``. With ``exact_match`` the arrays keep every greedy answer too."""
    lm, renderer = trained.lm, trained.renderer
    t0 = time.perf_counter()
    encoded = [renderer.encode(e) for e in examples]
    res = score_losses(lm.model, encoded, pad_id=lm.tokenizer.pad_token_id, batch_tokens=batch_tokens)
    loss = np.where(res.truncated, np.nan, np.asarray(res.loss, dtype=np.float64))
    exact = None
    answers: list[str] | None = None
    samples = None
    if exact_match:
        answers = greedy_answers(lm, renderer, examples, max_new_tokens=max_new_tokens, batch_size=batch_size)
        exact = np.array([a == _reference(e).strip() for a, e in zip(answers, examples)], dtype=np.float64)
        samples = [{"id": e.id, "answer": a, "reference": _reference(e).strip()}
                   for e, a in list(zip(examples, answers))[:8]]
    arrays = ExampleArrays([e.id for e in examples], loss, res.n_response_tokens.astype(np.float64), exact,
                           answers)
    metrics = example_metrics(arrays, groups)
    if samples is not None:
        metrics["samples"] = samples
    metrics["eval_seconds"] = round(time.perf_counter() - t0, 2)
    return metrics, arrays
