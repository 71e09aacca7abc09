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

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from proxysel.data.example import Example, Pool
from proxysel.dynamics.train import fine_tune
from proxysel.engine import LossResult, score_losses
from proxysel.errors import UsageError
from proxysel.models.render import Encoded
from proxysel.options import DEFAULT_BATCH_TOKENS, TrainProxyConfig, check_fields, option
from proxysel.signals.base import Signal, register_signal
from proxysel.signals.loss import loss_table
from proxysel.store.atomic import save_model_folder

__all__ = ["COLUMNS", "ColorConfig", "ColorSignal", "color_losses", "color_scores", "fine_tune_conditional"]

log = logging.getLogger(__name__)

#: The columns ``color_scores`` returns: the score and the two losses it is the difference of.
COLUMNS = ("color", "color_loss_prior", "color_loss_conditional")


def fine_tune_conditional(lm: Any, renderer: Any, reference_examples: Sequence[Example], config: Any,
                          state_dir: str | Path) -> tuple[Any, int]:
    """The conditional model: a copy of the prior ``lm.model`` fine-tuned on ``reference_examples``.

    lm: the prior (a LoadedModel), left as it is; load it in float32 (``config.dtype`` chooses
    bf16 autocast), as ``benchmarking.target`` does for its targets. renderer: renders the
    reference examples exactly as the pool is rendered. config: a ``dynamics.train.TrainConfig``
    (epochs, lr, batch, LoRA; ``checkpoints`` is not used). state_dir: the resumable training
    state; a rerun after an interruption continues from the last epoch saved, and one after the
    end loads the final weights. Returns (the fine-tuned copy, in eval mode; the input tokens
    trained on, summed over every optimizer step of every process: the compute ledger's T).
    """
    model = copy.deepcopy(lm.model)
    encoded = [renderer.encode(e) for e in reference_examples]
    _, log = fine_tune(model, encoded, pad_id=lm.tokenizer.pad_token_id, config=config, state_dir=state_dir,
                       max_length_name=f"max_length {renderer.max_length} (reference set)")
    return model.eval(), sum(int(h["tokens"]) for h in log.history)


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
                 batch_tokens: int = DEFAULT_BATCH_TOKENS) -> dict[str, np.ndarray]:
    """Score ``encoded`` with both models (``engine.score_losses``) and return ``color_scores``."""
    prior = score_losses(prior_model, encoded, pad_id=pad_id, batch_tokens=batch_tokens)
    conditional = score_losses(conditional_model, encoded, pad_id=pad_id, batch_tokens=batch_tokens)
    return color_scores(prior, conditional)


@dataclass(frozen=True)
class ColorConfig:
    """CoLoR-Filter's conditional model: the prior fine-tuned on the reference set (``score.color``).

    The rest of the recipe is ``train-proxy``'s (``options.TrainRecipe``: AdamW, cosine, clipping).
    The official code fine-tunes the prior for one epoch on the downstream data; a reference set of
    a few hundred examples gives a handful of steps at the train-proxy learning rate, so the
    defaults take more, smaller steps at a higher rate.
    """

    prior: str = option("given", "the prior: the proxy as given (score.model), or trained: the proxy after "
                                 "train-proxy on the pool (needs train-proxy --keep-checkpoints in this run)",
                        choices=("given", "trained"), flag="--color-prior")
    epochs: int = option(2, "epochs of fine-tuning on the reference set", minimum=1, flag="--color-epochs")
    lr: float = option(1e-4, "peak learning rate of that fine-tune", minimum=0, exclusive_min=True,
                       flag="--color-lr")
    batch_size: int = option(4, "examples per micro-batch", minimum=1, flag="--color-batch-size")
    grad_accum: int = option(2, "micro-batches per step (effective batch = batch_size x grad_accum)",
                             minimum=1, flag="--color-grad-accum")
    seed: int = option(0, "seed of the fine-tune's data order", flag="--color-seed")

    def __post_init__(self) -> None:
        check_fields(self)


@register_signal("color")
class ColorSignal(Signal):
    """``color = loss_prior - loss_conditional`` of every pool example (mean response-token losses).

    ``prepare`` fine-tunes the conditional model once per run and reference set (stage
    ``color-conditional``, resumable; its weights are kept in the stage folder), then the pool is
    scored by both models shard by shard (stage ``color``).
    """

    columns = ("color", "color_loss_prior", "color_loss_conditional")
    needs = ("response",)
    needs_reference = True
    prepare_stages = ("color-conditional",)

    def _prior_spec(self, run: Any) -> tuple[str, str]:
        """(the prior's model spec, what it is, for the manifest)."""
        if self.config.color.prior == "given":
            return self.model, f"the proxy as given ({self.model})"
        final = ((run.manifest.get("stages") or {}).get("train-proxy") or {}).get("final_checkpoint")
        folder = run.path / final if final else None
        if folder is None or not folder.is_dir():
            raise UsageError("score.color.prior trained needs the proxy's final weights: run "
                             "`proxysel train-proxy DATA --keep-checkpoints --out RUN` (full fine-tuning) "
                             "into this run first")
        return str(folder), f"the proxy after train-proxy ({folder.name})"

    def prepare(self, run: Any) -> dict[str, Any]:
        prior, what = self._prior_spec(run)
        c = self.config.color
        recipe = TrainProxyConfig(model=prior, epochs=c.epochs, lr=c.lr, batch_size=c.batch_size,
                                  grad_accum=c.grad_accum, seed=c.seed, max_length=self.config.max_length,
                                  template=self.config.template, batch_tokens=self.config.batch_tokens,
                                  dtype="bfloat16" if self.config.dtype == "bfloat16" else "float32",
                                  checkpoints=0)
        base = super().fingerprint(self.reference, {})
        fingerprint = {**base, "model": prior, "prior": c.prior, "recipe": dataclasses.asdict(recipe)}
        stage = run.stage(self.prepare_stages[0], fingerprint)
        self.prior_spec, self.conditional_path = prior, stage.path / "model"
        if not stage.complete:
            t0 = time.perf_counter()
            lm = self.load_lm(model=prior, dtype="float32")  # trained in float32 (bf16 is autocast)
            model, tokens = fine_tune_conditional(lm, self.renderer(lm.tokenizer), self.reference.examples,
                                                  recipe, stage.path / "state")
            save_model_folder(self.conditional_path, model, lm.tokenizer)
            stage.mark_complete({"seconds": round(time.perf_counter() - t0, 3), "prior": what,
                                 "reference_examples": len(self.reference.examples), "train_tokens": tokens})
            log.info("color: conditional model fine-tuned on %d reference examples",
                     len(self.reference.examples))
        return {"conditional": fingerprint, "prior_spec": prior}

    def fingerprint(self, pool: Pool, upstream: dict[str, Any]) -> dict[str, Any]:
        return {**super().fingerprint(pool, upstream), "conditional": upstream.get("conditional"),
                "model": upstream.get("prior_spec", self.model)}

    def stage_info(self) -> dict[str, Any]:
        return {"prior": self.config.color.prior, "prior_model": getattr(self, "prior_spec", self.model)}

    def setup(self, device: str | None) -> Any:
        prior = self.load_lm(device, model=self.prior_spec)
        conditional = self.load_lm(device, model=str(self.conditional_path))
        return prior, conditional, self.renderer(prior.tokenizer)

    def compute(self, state: Any, examples: list, bar: Any) -> Any:
        prior, conditional, renderer = state
        encoded = [renderer.encode(e) for e in examples]
        pad, batch_tokens = prior.tokenizer.pad_token_id, self.config.batch_tokens
        p = score_losses(prior.model, encoded, pad_id=pad, batch_tokens=batch_tokens,
                         on_batch=lambda n, t: bar.update(0, t))
        c = score_losses(conditional.model, encoded, pad_id=pad, batch_tokens=batch_tokens,
                         on_batch=lambda n, t: bar.update(n, t))
        table = loss_table([e.id for e in examples], p).drop_columns(["loss", "ppl"])
        for name, values in color_scores(p, c).items():
            table = table.append_column(name, pa.array(values, pa.float64()))
        return table
