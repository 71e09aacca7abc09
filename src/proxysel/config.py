"""The ``proxysel run`` config: typed frozen dataclasses, YAML in and out, dotted overrides.

A config file names the whole pipeline (see ``configs/`` for one per method)::

    out: runs/lp_app                 # the run folder (default: runs/<config file name>)
    data: {demo: 300}                # or {path: pool.jsonl, format: ..., limit: ...}
    train_proxy: {epochs: 1, checkpoints: 0}
    score: {signals: [embedding]}
    select: {method: lp_app, budget: 0.3, clusters: 10}   # one mapping, or a list of them
    report: {enabled: true}

``load_config(path, overrides)`` reads it with ``yaml.safe_load`` only, applies dotted overrides
(``select.budget=0.2``, ``train_proxy.model=gemma3-270m``, ``select.1.seed=3``,
``score=null``) with the type of the field they name, and returns a validated ``RunConfig``.
Every section checks itself in ``__post_init__``; any mistake (an unknown key, a wrong type, a
value outside the allowed ones) is a ``ConfigError`` (exit code 2) that names the dotted field
and what is allowed, with a did-you-mean for near misses. ``dump_config`` writes the resolved
config back as YAML; loading that gives an equal ``RunConfig``.

Each field's ``help`` metadata is its documentation: ``docs/cli.md`` is generated from it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TypeVar

from proxysel.errors import UsageError

__all__ = ["ConfigError", "DataConfig", "DensityConfig", "ReportConfig", "RunConfig", "RuntimeConfig",
           "ScoreConfig", "SelectConfig", "TrainProxyConfig", "apply_overrides", "config_from_dict",
           "config_to_dict", "dump_config", "load_config", "parse_override"]

FORMATS = ("alpaca", "sharegpt", "messages", "prompt-completion", "text")
SIGNALS = ("loss", "ifd", "ask_llm", "embedding", "density")
DTYPES = ("float32", "bfloat16", "float16")
TEMPLATES = ("auto", "chat", "alpaca")
METHODS = ("random", "top", "lp", "lp_app", "s2l", "density", "ask_llm", "ifd")


class ConfigError(UsageError):
    """A bad config field (exit code 2). ``field`` is its dotted name, e.g. ``select.budget``."""

    def __init__(self, field_name: str, message: str, source: str | None = None) -> None:
        self.field = field_name
        self.reason = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}config field '{field_name}': {message}" if field_name
                         else f"{where}config: {message}")


class _FieldError(ValueError):
    """Raised inside ``__post_init__``: ``name`` is relative to the section, prefixed on the way up."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def _opt(default: Any, help: str, *, choices: Sequence[Any] | None = None, minimum: float | None = None,
         maximum: float | None = None, exclusive_min: bool = False) -> Any:
    """A dataclass field with its documentation and the checks ``_check_fields`` applies."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "min": minimum, "max": maximum,
            "exclusive_min": exclusive_min}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'lp_app'?)`` for a close match among ``options``, else ``""``."""
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _check_fields(obj: Any) -> None:
    """Apply each field's ``choices`` / ``min`` / ``max`` metadata (None is always allowed where typed)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        meta = f.metadata
        if value is None:
            continue
        choices = meta.get("choices")
        values = value if isinstance(value, tuple) else (value,)
        if choices:
            for v in values:
                if v not in choices:
                    raise _FieldError(f.name, f"{v!r} is not one of {', '.join(map(str, choices))}"
                                              f"{did_you_mean(v, choices)}")
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            if value < lo or (meta.get("exclusive_min") and value == lo):
                op = ">" if meta.get("exclusive_min") else ">="
                raise _FieldError(f.name, f"must be {op} {lo:g}, got {value!r}")
        if hi is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value > hi:
            raise _FieldError(f.name, f"must be <= {hi:g}, got {value!r}")


# ------------------------------------------------------------------------------------ sections


@dataclass(frozen=True)
class DataConfig:
    """The candidate pool and how to read it (``proxysel score`` DATA and its read options)."""

    path: str | None = _opt(None, "the pool: a .jsonl, .jsonl.gz, .json, .parquet file, a folder of them or a "
                                  "HF datasets folder (relative to the working directory)")
    demo: int | None = _opt(None, "instead of path: the first N real ShareGPT conversations of the bundled "
                                  "demo sample (written to RUN/data/)", minimum=1)
    format: str | None = _opt(None, "record layout; null detects it per record", choices=FORMATS)
    columns: dict[str, str] | None = _opt(None, "rename fields before detection, e.g. {instruction: question}")
    limit: int | None = _opt(None, "read only the first N usable records", minimum=1)
    on_bad_record: str = _opt("error", "error: stop with exit code 2 before any work; skip: skip and list "
                                       "them in the manifest", choices=("error", "skip"))
    dedupe: bool = _opt(False, "keep the first of records with the same id")
    max_record_bytes: int | None = _opt(None, "a larger record is a bad record (default 16 MiB)", minimum=1)

    def __post_init__(self) -> None:
        _check_fields(self)
        if (self.path is None) == (self.demo is None):
            raise _FieldError("path", "give exactly one of data.path (your pool) and data.demo (N bundled "
                                      "ShareGPT conversations)")
        if self.path is not None and not self.path.strip():
            raise _FieldError("path", "is empty")

    def read_options(self) -> dict[str, Any]:
        """The keyword arguments of ``read_pool`` / ``api.score`` that this section sets."""
        out = {"format": self.format, "columns": dict(self.columns) if self.columns else None,
               "limit": self.limit, "on_bad_record": self.on_bad_record, "dedupe": self.dedupe}
        if self.max_record_bytes is not None:
            out["max_record_bytes"] = self.max_record_bytes
        return out


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the model work runs; shared by every proxy stage.

    Only ``shard_size`` is part of the stages' fingerprints: the other fields change where and how
    the work runs, not its results, so changing them reruns nothing (``RESULT_NEUTRAL``).
    """

    device: str | None = _opt(None, "cpu, cuda or cuda:N (default: cpu)")
    shard_size: int = _opt(256, "examples per resumable shard", minimum=1)
    trust_remote_code: bool = _opt(False, "allow a hub model's own Python code to run")
    allow_pickle: bool = _opt(False, "allow .bin/.pt weights (loaded with weights_only)")
    backend: str = _opt("local", "score: local (this process) or ray (a Ray Data pipeline; docs/scale.md)",
                        choices=("local", "ray"))
    ray_address: str | None = _opt(None, "backend ray: the cluster to join (default: $RAY_ADDRESS, else a new "
                                         "local one)")
    ray_actors: int | None = _opt(None, "backend ray: scoring actors (default: one per GPU, else per "
                                        "ray_cpus_per_actor CPUs)", minimum=1)
    ray_cpus_per_actor: int | None = _opt(None, "backend ray: CPUs per actor (default 1)", minimum=1)

    RESULT_NEUTRAL: typing.ClassVar[tuple[str, ...]] = (
        "device", "trust_remote_code", "allow_pickle", "backend", "ray_address", "ray_actors", "ray_cpus_per_actor")

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.backend == "local":
            given = [f for f in ("ray_address", "ray_actors", "ray_cpus_per_actor") if getattr(self, f) is not None]
            if given:
                raise _FieldError(given[0], "only applies with runtime.backend: ray")
        if self.device is not None and not (self.device == "cpu" or self.device == "cuda"
                                            or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise _FieldError("device", f"{self.device!r} is not one of cpu, cuda, cuda:N")


@dataclass(frozen=True)
class TrainProxyConfig:
    """``proxysel train-proxy``: fine-tune the proxy and record ppl_epoch, lp, lp_app, trajectory."""

    model: str = _opt("smollm2-135m", "the proxy: bundled name, .gguf file, local folder or hub id")
    epochs: int = _opt(3, "training epochs n; P_0..P_n are recorded (lp needs n >= 1; lp_app one epoch)",
                       minimum=1)
    checkpoints: int | None = _opt(None, "S2L trajectory points (evenly spaced steps incl. 0 and the last); "
                                         "null: 8, or 0 with online; 0: no trajectory", minimum=0)
    lp_epoch: int = _opt(1, "the epoch i of the lp and lp_app columns", minimum=1)
    lr: float = _opt(2e-5, "peak learning rate (cosine decay after warmup)", minimum=0, exclusive_min=True)
    batch_size: int = _opt(4, "examples per micro-batch", minimum=1)
    grad_accum: int = _opt(8, "micro-batches per optimizer step (effective batch = batch_size x grad_accum)",
                           minimum=1)
    warmup_ratio: float = _opt(0.03, "share of the steps in linear warmup", minimum=0, maximum=1)
    weight_decay: float = _opt(0.0, "AdamW weight decay on matrices", minimum=0)
    max_grad_norm: float = _opt(1.0, "gradient clipping; 0 = off", minimum=0)
    seed: int = _opt(42, "seeds the data order of every epoch")
    lora: bool = _opt(False, "train LoRA adapters on all linear layers (needs peft)")
    lora_r: int = _opt(16, "LoRA rank", minimum=1)
    lora_alpha: int = _opt(32, "LoRA alpha", minimum=1)
    online: bool = _opt(False, "take P_1..P_n from the training forward passes (approximation; faster)")
    keep_checkpoints: bool = _opt(False, "keep the weights of every scored step (safetensors)")
    max_length: int = _opt(512, "tokens per example; longer ones are cut on the right", minimum=2)
    dtype: str = _opt("float32", "float32, or bfloat16 (autocast over float32 weights)",
                      choices=("float32", "bfloat16"))
    template: str = _opt("auto", "auto: the model's chat template if it has one, else Alpaca", choices=TEMPLATES)
    batch_tokens: int = _opt(8192, "padded tokens per batch of the scoring passes", minimum=1)

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.lp_epoch > self.epochs:
            raise _FieldError("lp_epoch", f"must be in [1, epochs={self.epochs}], got {self.lp_epoch}")


@dataclass(frozen=True)
class DensityConfig:
    """The LSH sketch of the ``density`` signal (Sachdeva et al. 2024); null = the default."""

    R: int | None = _opt(None, "hash tables (default 256)", minimum=1)
    B: int | None = _opt(None, "buckets per table (default 16384)", minimum=1)
    r: float | None = _opt(None, "bucket width in embedding units (default 0.25)", minimum=0, exclusive_min=True)
    seed: int = _opt(0, "seed of the hash functions")

    def __post_init__(self) -> None:
        _check_fields(self)

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ScoreConfig:
    """``proxysel score``: per-example signals of the pool."""

    signals: tuple[str, ...] = _opt(("loss",), "any of loss, ifd, ask_llm, embedding, density "
                                              "(density reads the embeddings)", choices=SIGNALS)
    model: str = _opt("smollm2-135m", "model of loss and ifd")
    judge: str = _opt("smollm2-135m", "Ask-LLM judge (an instruction-tuned causal LM)")
    embedder: str = _opt("minilm", "sentence-transformers model of embedding (minilm = all-MiniLM-L6-v2)")
    max_length: int = _opt(512, "tokens per example; longer ones are cut on the right", minimum=2)
    dtype: str = _opt("float32", "weights and compute type", choices=DTYPES)
    template: str = _opt("auto", "auto: the model's chat template if it has one, else Alpaca", choices=TEMPLATES)
    batch_tokens: int = _opt(8192, "padded tokens per batch", minimum=1)
    density: DensityConfig = _opt(DensityConfig(), "the density sketch")

    def __post_init__(self) -> None:
        _check_fields(self)
        if not self.signals:
            raise _FieldError("signals", f"give at least one of {', '.join(SIGNALS)}")
        if len(set(self.signals)) != len(self.signals):
            raise _FieldError("signals", f"{list(self.signals)} names a signal twice")


@dataclass(frozen=True)
class SelectConfig:
    """``proxysel select``: one budgeted subset. Options a method does not take are refused."""

    method: str = _opt(None, "random, top, lp, lp_app, s2l, density, ask_llm, ifd (docs/methods.md)",
                       choices=METHODS)
    budget: float | int = _opt(None, "a fraction in (0, 1) or a count >= 1")
    seed: int = _opt(0, "seed of every random choice (k-means, sampling)")
    name: str | None = _opt(None, "folder under RUN/selections/ (default METHOD[-SIGNAL-ORDER]-BUDGET-sSEED)")
    clusters: int | None = _opt(None, "k-means clusters (lp/lp_app: over the embeddings, default 100; "
                                      "s2l: over the trajectories, default 100)", minimum=1)
    signal: str | None = _opt(None, "top/ifd: the score column to rank by")
    order: str | None = _opt(None, "top: which end to keep", choices=("low", "high", "middle"))
    rounding: str | None = _opt(None, "lp/lp_app: exact budget, or the official per-cluster ceil counts",
                                choices=("exact", "official"))
    within_clusters: bool | None = _opt(None, "rank inside clusters (lp/lp_app default true; false: global)")
    stratify: str | None = _opt(None, "s2l: split the budget by this record field (e.g. source)")
    with_replacement: bool | None = _opt(None, "density: sample with replacement")
    include_truncated: bool | None = _opt(None, "let fully truncated examples compete (default: left out)")
    options: dict[str, Any] = _opt({}, "other keyword arguments of the selector class (e.g. set_aside, "
                                       "kmeans_iter, on_short)")

    def __post_init__(self) -> None:
        from proxysel.selection import default_name, parse_budget

        if self.method is None:
            raise _FieldError("method", f"is required; one of {', '.join(METHODS)}")
        if self.budget is None:
            raise _FieldError("budget", "is required: a fraction in (0, 1) or a count >= 1")
        _check_fields(self)
        try:
            budget = parse_budget(self.budget)
        except UsageError:
            raise _FieldError("budget", f"must be a fraction in (0, 1) or a count >= 1, got {self.budget!r}") \
                from None
        object.__setattr__(self, "budget", budget)
        if self.stratify is not None and self.method != "s2l":
            raise _FieldError("stratify", f"is an option of s2l, not of {self.method}")
        clash = sorted(set(self.options) & set(self.params(with_options=False)))
        if clash:
            raise _FieldError("options", f"{clash} are fields of their own; set select.{clash[0]}")
        if self.name is None:
            object.__setattr__(self, "name", default_name(self.method, budget, self.seed, self.signal, self.order))
        else:
            from proxysel.store.run import check_name

            try:
                check_name(self.name, "selection name")
            except UsageError as e:
                raise _FieldError("name", str(e)) from None

    def params(self, with_options: bool = True) -> dict[str, Any]:
        """The selector's keyword arguments (``api.select(**params)``), unset ones left out."""
        keys = ("clusters", "signal", "order", "rounding", "within_clusters", "with_replacement",
                "include_truncated")
        out = {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
        if with_options:
            out.update(self.options)
        return out


@dataclass(frozen=True)
class ReportConfig:
    """``proxysel report``: RUN/report.html."""

    enabled: bool = _opt(True, "write RUN/report.html at the end")
    selection: str | None = _opt(None, "the selection the page colours by (default: the first one)")
    read_data: bool = _opt(True, "read the input records (keep rates per source/format, text previews)")

    def __post_init__(self) -> None:
        _check_fields(self)


@dataclass(frozen=True)
class RunConfig:
    """The whole pipeline: data -> proxy stage(s) -> selections -> report."""

    out: str | None = _opt(None, "the run folder, relative to the working directory (default: runs/<config file "
                                 "name>)")
    data: DataConfig = _opt(None, "the candidate pool")
    runtime: RuntimeConfig = _opt(RuntimeConfig(), "device and sharding, shared by the proxy stages")
    train_proxy: TrainProxyConfig | None = _opt(None, "proxy training (lp, lp_app, trajectory); null: none")
    score: ScoreConfig | None = _opt(None, "scoring signals (loss, ifd, ask_llm, embedding, density); null: none")
    select: tuple[SelectConfig, ...] = _opt((), "one selection, or a list of them")
    report: ReportConfig = _opt(ReportConfig(), "the report")

    def __post_init__(self) -> None:
        if self.data is None:
            raise _FieldError("data", "is required: {path: POOL} or {demo: N}")
        if self.train_proxy is None and self.score is None:
            raise _FieldError("score", "the config has no proxy stage: give train_proxy, score or both")
        names = [s.name for s in self.select]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise _FieldError("select", f"two selections are named {dups[0]!r}; give each a distinct name")
        if self.report.selection is not None and self.report.selection not in names:
            raise _FieldError("report.selection", f"{self.report.selection!r} is not one of the selections "
                                                  f"{names}{did_you_mean(self.report.selection, names)}")

    @property
    def selections(self) -> dict[str, SelectConfig]:
        return {s.name: s for s in self.select}


# ---------------------------------------------------------------------------- from / to dicts

_NONE_WORDS = ("null", "none", "~", "")
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


class _Cli(str):
    """A value typed on the command line: parsed from text by the type of its field."""


def _optional(hint: Any) -> tuple[bool, list[Any]]:
    """(None allowed, the other members) of a ``X | Y | None`` hint."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = list(typing.get_args(hint))
        return type(None) in args, [a for a in args if a is not type(None)]
    return False, [hint]


def _kind(hint: Any) -> str:
    if dataclasses.is_dataclass(hint):
        return "section"
    origin = typing.get_origin(hint)
    if origin is tuple:
        return "list"
    if origin is dict or hint is dict:
        return "mapping"
    return getattr(hint, "__name__", str(hint))


def _describe(hint: Any) -> str:
    nullable, members = _optional(hint)
    names = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
             "mapping": "a mapping", "list": "a list", "section": "a mapping"}
    text = " or ".join(dict.fromkeys(names.get(_kind(m), str(m)) for m in members))
    return text + (" or null" if nullable else "")


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` (from YAML, or ``_Cli`` text) as the type ``hint``; _FieldError(name) if it cannot be."""
    nullable, members = _optional(hint)
    if value is None or (isinstance(value, _Cli) and value.strip().lower() in _NONE_WORDS
                         and not (len(members) == 1 and members[0] is str and value.strip())):
        if nullable:
            return None
        raise _FieldError(name, f"must be {_describe(hint)}, not null")
    if len(members) == 2 and {_kind(m) for m in members} == {"float", "int"}:  # budget: keep int vs float
        return _number(value, name, hint)
    errors = []
    for member in members:
        try:
            return _coerce_one(value, member, name)
        except _FieldError as e:
            errors.append(e)
    raise errors[0] if len(errors) == 1 else _FieldError(name, f"must be {_describe(hint)}, got {value!r}")


def _number(value: Any, name: str, hint: Any) -> int | float:
    if isinstance(value, bool):
        raise _FieldError(name, f"must be {_describe(hint)}, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return value  # the section's own check says what a good value looks like
    raise _FieldError(name, f"must be {_describe(hint)}, got {value!r}")


def _coerce_one(value: Any, hint: Any, name: str) -> Any:
    kind = _kind(hint)
    cli = isinstance(value, _Cli)
    if kind == "section":
        if cli:
            value = _yaml_text(value, name)
        if value is None:
            value = {}
        return _build(hint, value, name)
    if kind == "list":
        (item,) = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if cli:
            text = value.strip()
            value = _yaml_text(value, name) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
        if isinstance(value, (str, int, float)) and not dataclasses.is_dataclass(item):
            value = [value]  # a single signal written without brackets
        if isinstance(value, Mapping) and dataclasses.is_dataclass(item):
            value = [value]  # one selection written as a mapping
        if not isinstance(value, (list, tuple)):
            raise _FieldError(name, f"must be a list, got {value!r}")
        if dataclasses.is_dataclass(item):
            return tuple(_coerce(v, item, _index_name(name, i, len(value))) for i, v in enumerate(value))
        return tuple(_coerce(v, item, name) for v in value)
    if kind == "mapping":
        if cli:
            value = _yaml_text(value, name)
        if not isinstance(value, Mapping):
            raise _FieldError(name, f"must be a mapping, got {value!r}")
        args = typing.get_args(hint)
        if args and args[1] is str:
            bad = [k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str)]
            if bad:
                raise _FieldError(name, f"must map names to names (strings), got {bad[0]!r}")
        return {str(k): v for k, v in value.items()}
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS + _FALSE_WORDS:
            return value.strip().lower() in _TRUE_WORDS
        raise _FieldError(name, f"must be true or false, got {value!r}")
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _FieldError(name, f"must be an integer, got {value!r}")
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out = float(value)
        elif isinstance(value, str):  # PyYAML reads 2e-5 (no dot) as a string
            try:
                out = float(value.strip())
            except ValueError:
                raise _FieldError(name, f"must be a number, got {value!r}") from None
        else:
            raise _FieldError(name, f"must be a number, got {value!r}")
        if not math.isfinite(out):
            raise _FieldError(name, f"must be a finite number, got {value!r}")
        return out
    if kind == "str":
        if isinstance(value, str):
            return str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _FieldError(name, f"must be a string, got {value!r}")
    if hint is Any:
        return _yaml_text(value, name) if cli else value
    raise TypeError(f"config: no coercion for type {hint!r} of {name}")  # pragma: no cover


def _yaml_text(value: str, name: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(str(value))
    except yaml.YAMLError as e:
        raise _FieldError(name, f"cannot read {value!r} as YAML: {e}") from None


def _index_name(name: str, i: int, n: int) -> str:
    return name if n == 1 else f"{name}.{i}"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """``cls(**raw)`` with every field coerced and checked; errors name ``prefix.field``."""
    if not isinstance(raw, Mapping):
        raise _FieldError(prefix, f"must be a mapping of {', '.join(f.name for f in dataclasses.fields(cls))}, "
                                  f"got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            raise _FieldError(_join(prefix, str(key)),
                              f"unknown key; {_section_name(prefix)} takes {', '.join(names)}{did_you_mean(key, names)}")
        kwargs[key] = _coerce(value, hints[key], _join(prefix, key))
    try:
        return cls(**kwargs)
    except _FieldError as e:
        raise _FieldError(_join(prefix, e.name), e.message) from None


def _section_name(prefix: str) -> str:
    return f"'{prefix}'" if prefix else "the config"


_C = TypeVar("_C")


def build_config(cls: type[_C], raw: Mapping[str, Any] | None, source: str | None = None) -> _C:
    """Build and validate the config dataclass ``cls`` (RunConfig, BenchConfig) from a plain dict."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("", f"the top level must be a mapping of sections, got {type(raw).__name__}", source)
    try:
        return _build(cls, raw, "")
    except _FieldError as e:
        raise ConfigError(e.name, e.message, source) from None


def config_from_dict(raw: Mapping[str, Any] | None, source: str | None = None) -> RunConfig:
    """Build and validate a RunConfig from a plain dict (as ``yaml.safe_load`` gives)."""
    return build_config(RunConfig, raw, source)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain dicts, lists and scalars (YAML/JSON-ready); ``select`` is always a list."""
    return _plain(config)


def dump_config(config: RunConfig, header: str = "") -> str:
    """The config as YAML text; ``load_config`` of it gives an equal config."""
    import yaml

    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True, default_flow_style=False)
    lines = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines()) if header else ""
    return lines + text


# -------------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[list[str], str]:
    """``"select.budget=0.2"`` -> (["select", "budget"], "0.2")."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("", f"override {text!r} must look like dotted.field=value, e.g. select.budget=0.2")
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(key, f"override {text!r}: empty part in the dotted name")
    return parts, value


def apply_overrides(raw: Mapping[str, Any] | None, overrides: Sequence[str], cls: type | None = None) -> dict[str, Any]:
    """A copy of ``raw`` with each ``dotted.field=value`` set; unknown fields are ConfigErrors.

    ``cls``: the config dataclass the fields belong to (RunConfig when None). Selections are
    addressed by index or name (``select.0.budget``, ``select.lp-30.budget``); with a single
    selection, ``select.budget`` is enough.
    """
    import copy

    out: dict[str, Any] = copy.deepcopy(dict(raw or {}))
    for text in overrides:
        parts, value = parse_override(text)
        _set(out, cls or RunConfig, parts, _Cli(value), "")
    return out


def _set(node: dict[str, Any], cls: type, parts: list[str], value: _Cli, prefix: str) -> None:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    key, rest = parts[0], parts[1:]
    name = _join(prefix, key)
    if key not in names:
        raise ConfigError(name, f"unknown key; {_section_name(prefix)} takes {', '.join(names)}"
                                f"{did_you_mean(key, names)}")
    if not rest:
        node[key] = value
        return
    _, members = _optional(hints[key])
    hint = members[0]
    if dataclasses.is_dataclass(hint):
        child = node.get(key)
        if not isinstance(child, dict):
            child = {} if child is None or isinstance(child, _Cli) else child
            if not isinstance(child, dict):
                raise ConfigError(name, f"is {child!r}, not a mapping; cannot set {'.'.join(rest)} in it")
            node[key] = child
        _set(child, hint, rest, value, name)
        return
    if _kind(hint) == "list" and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        item_cls = typing.get_args(hint)[0]
        items = node.get(key)
        if items is None:
            items = [{}]
        elif isinstance(items, Mapping):
            items = [dict(items)]
        elif not isinstance(items, list):
            raise ConfigError(name, f"must be a mapping or a list of mappings, got {items!r}")
        node[key] = items
        head = rest[0]
        target = None
        if head.isdigit():
            if int(head) >= len(items):
                raise ConfigError(f"{name}.{head}", f"there are only {len(items)} selections (0..{len(items) - 1})")
            target, rest, where = int(head), rest[1:], f"{name}.{head}"
        else:
            named = [i for i, it in enumerate(items) if isinstance(it, Mapping) and it.get("name") == head]
            if named:
                target, rest, where = named[0], rest[1:], f"{name}.{head}"
            elif len(items) == 1:
                target, where = 0, name
            else:
                raise ConfigError(f"{name}.{head}", f"there are {len(items)} selections: address one as "
                                                    f"{name}.<index>.{head} or {name}.<name>.{head}")
        if not rest:
            raise ConfigError(where, "name a field of the selection, e.g. .budget")
        if not isinstance(items[target], dict):
            raise ConfigError(where, f"must be a mapping, got {items[target]!r}")
        _set(items[target], item_cls, rest, value, where)
        return
    if _kind(hint) == "mapping":
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        if len(rest) == 1:
            child[rest[0]] = _yaml_text(value, name) if typing.get_args(hint)[1:] and \
                typing.get_args(hint)[1] is Any else str(value)
            return
    raise ConfigError(name, f"is {_describe(hints[key])}; it has no field {'.'.join(rest)!r}")


# ----------------------------------------------------------------------------------- loading


def read_yaml_mapping(path: Path) -> dict[str, Any] | None:
    """The top-level mapping of a YAML file (``yaml.safe_load``), or None for an empty file.

    A missing or unreadable file, invalid YAML (named by file:line) or a top level that is no
    mapping is an error with exit code 2.
    """
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read config file {path}: {e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise UsageError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError("", f"the top level must be a mapping of sections, got {type(raw).__name__}", str(path))
    return raw


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config (``yaml.safe_load``), apply ``overrides`` and validate.

    ``out`` defaults to ``runs/<file name without extension>``. Errors: ConfigError (exit code 2)
    naming the file and the dotted field.
    """
    path = Path(path)
    raw = read_yaml_mapping(path)
    try:
        raw = apply_overrides(raw, overrides)
    except ConfigError as e:
        raise ConfigError(e.field, e.reason, f"{path} (override)") from None
    cfg = config_from_dict(raw, source=str(path))
    if cfg.out is None:  # absent, null, or an override such as `out=` / `out=null`
        cfg = dataclasses.replace(cfg, out=str(Path("runs") / path.stem))
    return cfg


def iter_fields(cls: type = RunConfig, prefix: str = "") -> Iterable[tuple[str, Any, Any, str, tuple | None]]:
    """(dotted name, type hint, default, help, allowed values) of every field, for the documentation.

    Sections come before their fields, with default None; list elements are named ``select[]``.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = _join(prefix, f.name)
        _, members = _optional(hints[f.name])
        inner = members[0]
        help_text, choices = f.metadata.get("help", ""), f.metadata.get("choices")
        if _kind(inner) == "list" and dataclasses.is_dataclass(typing.get_args(inner)[0]):
            yield name, hints[f.name], None, help_text, None
            yield from iter_fields(typing.get_args(inner)[0], f"{name}[]")
        elif dataclasses.is_dataclass(inner):
            yield name, hints[f.name], None, help_text, None
            yield from iter_fields(inner, name)
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            yield name, hints[f.name], default, help_text, choices
