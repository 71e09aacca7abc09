"""``proxysel score``'s options: which signals, with which models, and the signals' own sections."""

from __future__ import annotations

from dataclasses import dataclass

from proxysel.options import (
    DEFAULT_BATCH_TOKENS,
    DEFAULT_MAX_LENGTH,
    DEFAULT_PROXY,
    DTYPES,
    TEMPLATES,
    FieldError,
    check_fields,
    option,
)
from proxysel.signals.base import available_signals, get_signal, score_signals
from proxysel.signals.color import ColorConfig
from proxysel.signals.density_stage import DensityConfig
from proxysel.signals.lexical import LexicalConfig
from proxysel.signals.near_dup import NearDupConfig

__all__ = ["ScoreConfig"]


@dataclass(frozen=True)
class ScoreConfig:
    """``proxysel score``: per-example signals of the pool."""

    signals: tuple[str, ...] = option(("loss",), "comma-separated signals (docs/signals.md); density reads "
                                                "the embeddings", choices=score_signals)
    model: str = option(DEFAULT_PROXY, "model of loss, ifd and the reference-aware signals: bundled name "
                                       "(smollm2-135m, gemma3-270m), .gguf file, local folder or hub id")
    judge: str = option(DEFAULT_PROXY, "Ask-LLM judge, any instruction-tuned causal LM")
    embedder: str = option("minilm", "sentence-transformers model of embedding (minilm = all-MiniLM-L6-v2)")
    max_length: int = option(DEFAULT_MAX_LENGTH, "tokens per example; longer ones are cut on the right",
                             minimum=2)
    dtype: str = option("float32", "weights and compute type (bfloat16 is ~1.7x faster on CPUs with AVX-512 "
                                   "BF16, and tens of times slower on CPUs without it)", choices=DTYPES)
    template: str = option("auto", "auto: the model's chat template if it has one, else Alpaca",
                           choices=TEMPLATES)
    batch_tokens: int = option(DEFAULT_BATCH_TOKENS, "padded tokens per batch (batch size x longest example)",
                               minimum=1)
    density: DensityConfig = option(DensityConfig(), "the density sketch")
    near_dup: NearDupConfig = option(NearDupConfig(), "the near-duplicate groups of near_dup (MinHash LSH)")
    lexical: LexicalConfig = option(LexicalConfig(), "the word-translation tables of lexical (IBM Model 1 "
                                                     "per embedding cluster)")
    color: ColorConfig = option(ColorConfig(), "CoLoR-Filter's conditional model (the prior fine-tuned on "
                                               "the reference set)")

    def __post_init__(self) -> None:
        for name in self.signals or ():
            if name in available_signals("train-proxy"):  # registered, but not something score computes
                raise FieldError("signals", f"{name} is computed by train-proxy, not by score: "
                                            f"{get_signal(name).how_to_make('DATA', 'RUN')}")
        check_fields(self)
        if not self.signals:
            raise FieldError("signals", f"give at least one of {', '.join(score_signals())}")
        if len(set(self.signals)) != len(self.signals):
            raise FieldError("signals", f"{list(self.signals)} names a signal twice")

    def ordered_signals(self) -> list[str]:
        """The signals in the order they run: every signal after the ones it ``requires``."""
        out: list[str] = []

        def visit(name: str) -> None:
            if name not in out:
                for dep in get_signal(name).requires:
                    if dep in self.signals:
                        visit(dep)
                out.append(name)

        for name in self.signals:
            visit(name)
        return out
