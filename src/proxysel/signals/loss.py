"""``loss``: per-example mean response-token loss (nats) of the proxy, and ``ppl = exp(loss)``."""

from __future__ import annotations

from typing import Any

from proxysel.data.example import Pool
from proxysel.signals.base import ScoreOptions, load_lm, model_fingerprint, register_signal, run_sharded


def loss_table(ids: list[str], result: Any) -> Any:
    """An arrow table of the loss columns; row i belongs to ids[i]."""
    import pyarrow as pa

    return pa.table({
        "id": pa.array(ids, pa.string()),
        "n_tokens": pa.array(result.n_tokens, pa.int64()),
        "n_response_tokens": pa.array(result.n_response_tokens, pa.int64()),
        "truncated": pa.array(result.truncated, pa.bool_()),
        "loss": pa.array(result.loss, pa.float64()),
        "ppl": pa.array(result.ppl, pa.float64()),
    })


@register_signal("loss")
def run_loss_stage(run: Any, pool: Pool, opts: ScoreOptions) -> None:
    """Score ``pool`` with ``opts.model`` into the ``loss`` stage and scores.parquet."""

    def setup(device: str | None) -> Any:
        from proxysel.models.render import Renderer

        lm = load_lm(opts.model, opts, device)
        return lm, Renderer(lm.tokenizer, max_length=opts.max_length, template=opts.template)

    def compute(state: Any, examples: list, bar: Any) -> Any:
        from proxysel.engine import score_losses

        lm, renderer = state
        res = score_losses(lm.model, [renderer.encode(e) for e in examples], pad_id=lm.tokenizer.pad_token_id,
                           batch_tokens=opts.batch_tokens, on_batch=lambda n, t: bar.update(n, t))
        return loss_table([e.id for e in examples], res)

    run_sharded(run, pool, stage_name="loss", fingerprint=model_fingerprint(pool, opts.model, opts),
                shard_size=opts.shard_size, setup=setup, compute=compute, desc=f"loss [{opts.model}]",
                backend=opts.make_backend(), device=opts.device)
