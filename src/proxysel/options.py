"""Options, declared once: typed frozen dataclasses whose fields carry their default, help text and
checks, and the one machinery that reads them from YAML, dotted overrides, command-line flags and
keyword arguments.

A field is declared with ``option``::

    @dataclass(frozen=True)
    class ScoreConfig:
        max_length: int = option(512, "tokens per example; longer ones are cut on the right", minimum=2)

and from that one line come: the YAML key ``score.max_length`` (``build_config``), the dotted
override ``score.max_length=256`` (``apply_overrides``), the flag ``--max-length`` with its help
(``add_arguments``), the API keyword ``max_length=256`` (``from_kwargs``), the line in
docs/cli.md (``iter_fields``) and its check (``check_fields``, called by ``__post_init__``).

Every mistake is a ``ConfigError`` (exit code 2) that names the field the way the user wrote it:
``config field 'score.max_length': must be >= 2, got 1`` for a config file,
``--max-length must be >= 2, got 1`` on the command line, ``max_length must be >= 2, got 1`` in
Python, with a did-you-mean for near misses.

This module sits at the bottom of the package: it imports nothing of proxysel but ``errors``.
The leaf sections that several layers share (how a pool is read, where work runs, a training
recipe) are defined here too; the run config that composes them with the registries is
``proxysel.config``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import yaml

from proxysel.errors import UsageError

__all__ = ["ConfigError", "DTYPES", "FORMATS", "FieldError", "ReadConfig", "ReportConfig", "RuntimeConfig",
           "TEMPLATES", "TrainProxyConfig", "TrainRecipe", "add_arguments", "apply_overrides", "build_config",
           "check_fields", "config_to_dict", "did_you_mean", "dump_yaml", "from_args", "from_kwargs",
           "iter_fields", "option", "read_yaml_mapping"]

FORMATS = ("alpaca", "sharegpt", "messages", "prompt-completion", "text")
DTYPES = ("float32", "bfloat16", "float16")
TRAIN_DTYPES = ("float32", "bfloat16")
TEMPLATES = ("auto", "chat", "alpaca")

#: The proxy every command uses unless told otherwise (DESIGN.md section 3).
DEFAULT_PROXY = "smollm2-135m"
#: Padded tokens per batch of every scoring pass.
DEFAULT_BATCH_TOKENS = 8192
#: Tokens per example (right truncation).
DEFAULT_MAX_LENGTH = 512


class ConfigError(UsageError):
    """A bad config field (exit code 2). ``field`` is its dotted name, e.g. ``select.budget``."""

    def __init__(self, field_name: str, message: str, source: str | None = None, *,
                 flag: str | None = None) -> None:
        self.field = field_name
        self.reason = message
        self.source = source
        self.flag = flag
        where = f"{source}: " if source else ""
        if flag is not None:  # a command-line flag or a keyword argument: "--max-length must be >= 2"
            text = f"{flag} {message}"
        elif field_name:
            text = f"{where}config field '{field_name}': {message}"
        else:
            text = f"{where}config: {message}"
        super().__init__(text)


class FieldError(UsageError, ValueError):
    """Raised inside ``__post_init__``: ``name`` is relative to the section, prefixed on the way up.

    A UsageError (exit code 2) and a ValueError, for code that builds a section directly."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name} {message}" if name else message)
        self.name = name
        self.message = message


def option(default: Any, help: str, *, choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None,
           minimum: float | None = None, maximum: float | None = None, exclusive_min: bool = False,
           exclusive_max: bool = False, flag: str | None = None, negative: str | None = None,
           cli: bool = True, metavar: str | None = None, nonempty: bool = False) -> Any:
    """A dataclass field with its documentation, its checks and how it shows on the command line.

    choices:   allowed values (a callable is asked when checking: a registry's names).
    minimum, maximum, exclusive_min, exclusive_max: numeric bounds.
    flag:      the command-line flag (default ``--field-name``); ``negative``: a flag that sets a
               tri-state or true-by-default bool to False (``--global`` for ``within_clusters``).
    cli:       False keeps the field out of generated command-line options.
    nonempty:  a string that must not be empty (a column name).
    """
    meta = {"help": help, "choices": choices if callable(choices) else (tuple(choices) if choices else None),
            "min": minimum, "max": maximum, "exclusive_min": exclusive_min, "exclusive_max": exclusive_max,
            "flag": flag, "negative": negative, "cli": cli, "metavar": metavar, "nonempty": nonempty}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


def choices_of(f: dataclasses.Field) -> tuple[Any, ...] | None:
    """The allowed values of a field (asking the registry when they come from one)."""
    choices = f.metadata.get("choices")
    return tuple(choices()) if callable(choices) else choices


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'lp_app'?)`` for a close match among ``options``, else ``""``."""
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _type_problem(value: Any, hint: Any) -> str | None:
    """What is wrong with ``value`` for the type ``hint`` (None if nothing): the check a section built
    in Python gets, which one read from YAML or flags passed on the way in (``coerce``)."""
    nullable, members = _optional(hint)
    if value is None:
        return None if nullable else f"must be {_describe(hint)}, not null"
    kinds = {_kind(m) for m in members}
    if isinstance(value, bool):
        ok = "bool" in kinds
    elif isinstance(value, int):
        ok = bool(kinds & {"int", "float"})
    elif isinstance(value, float):
        if "float" in kinds and not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        ok = "float" in kinds
    elif isinstance(value, str):
        ok = "str" in kinds
    else:
        ok = not kinds & {"bool", "int", "float", "str"} or len(kinds) > 1
    return None if ok else f"must be {_describe(hint)}, got {value!r}"


def check_fields(obj: Any) -> None:
    """Check each field's type, and apply its ``choices`` / ``min`` / ``max`` metadata (None is allowed
    where the type says so)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        meta = f.metadata
        if "help" not in meta:
            continue
        problem = _type_problem(value, hints[f.name])
        if problem is not None:
            raise FieldError(f.name, problem)
        if value is None:
            continue
        if meta.get("nonempty") and isinstance(value, str) and not value.strip():
            raise FieldError(f.name, "must not be empty")
        choices = choices_of(f)
        values = value if isinstance(value, tuple) else (value,)
        if choices:
            for v in values:
                if v not in choices:
                    raise FieldError(f.name, f"{v!r} is not one of {', '.join(map(str, choices))}"
                                             f"{did_you_mean(v, choices)}")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None and (value < lo or (meta.get("exclusive_min") and value == lo)):
            op = ">" if meta.get("exclusive_min") else ">="
            raise FieldError(f.name, f"must be {op} {lo:g}, got {value!r}")
        if hi is not None and (value > hi or (meta.get("exclusive_max") and value == hi)):
            op = "<" if meta.get("exclusive_max") else "<="
            raise FieldError(f.name, f"must be {op} {hi:g}, got {value!r}")


# ------------------------------------------------------------------------------ the leaf sections


@dataclass(frozen=True)
class ReadConfig:
    """How a pool (or a reference set) is read: the options of ``read_pool``."""

    format: str | None = option(None, "record layout; null detects it per record", choices=FORMATS)
    columns: dict[str, str] | None = option(None, "rename fields before detection, e.g. "
                                                  "{instruction: question} (on the command line as JSON "
                                                  "or YAML)")
    limit: int | None = option(None, "read only the first N usable records", minimum=1)
    on_bad_record: str = option("error", "error: stop with exit code 2 before any work; skip: skip and list "
                                         "them in the manifest", choices=("error", "skip"))
    dedupe: bool = option(False, "keep the first of records with the same id")
    max_record_bytes: int | None = option(None, "a larger record is a bad record (default 16 MiB): a guard "
                                                "against a huge or runaway record", minimum=1, metavar="N")

    def __post_init__(self) -> None:
        check_fields(self)

    def read_options(self) -> dict[str, Any]:
        """The keyword arguments of ``read_pool`` this section sets, as the manifest records them
        (``max_record_bytes`` only when given, so runs made without it keep their manifest)."""
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

    device: str | None = option(None, "cpu, cuda or cuda:N (default: cpu)")
    shard_size: int = option(256, "examples per resumable shard", minimum=1)
    trust_remote_code: bool = option(False, "allow a hub model's own Python code to run")
    allow_pickle: bool = option(False, "allow .bin/.pt weights (loaded with weights_only); default: "
                                       "safetensors or GGUF only")
    backend: str = option("local", "score: local (this process) or ray (a Ray Data pipeline, one model per "
                                   "actor; pip install 'proxysel[ray]'; docs/scale.md). Same results "
                                   "either way",
                          choices=("local", "ray"))
    ray_address: str | None = option(None, "backend ray: the cluster to join: auto, ray://HEAD:10001 or "
                                           "HOST:PORT (default: $RAY_ADDRESS, else a new local one)")
    ray_actors: int | None = option(None, "backend ray: scoring actors (default: one per GPU, else one per "
                                          "ray_cpus_per_actor CPUs)", minimum=1)
    ray_cpus_per_actor: int | None = option(None, "backend ray: CPUs per actor, and torch threads of a CPU "
                                                  "actor (default 1)", minimum=1)

    RESULT_NEUTRAL: typing.ClassVar[tuple[str, ...]] = (
        "device", "trust_remote_code", "allow_pickle", "backend", "ray_address", "ray_actors",
        "ray_cpus_per_actor")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.backend == "local":
            given = [f for f in ("ray_address", "ray_actors", "ray_cpus_per_actor")
                     if getattr(self, f) is not None]
            if given:
                raise FieldError(given[0], "only applies with runtime.backend: ray")
        if self.device is not None and not (
                self.device == "cpu" or self.device == "cuda"
                or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise FieldError("device", f"{self.device!r} is not one of cpu, cuda, cuda:N")


@dataclass(frozen=True)
class TrainRecipe:
    """A model and how it is fine-tuned: the proxy's ``train-proxy`` and the bench target share it.

    Defaults are the official LP recipe (Small2Large, which trains with the HF Trainer): AdamW,
    lr 2e-5 with linear warmup over ceil(0.03 x steps) and cosine decay to 0, clipping at 1.0,
    effective batch 32 = batch_size x grad_accum, 3 epochs, response tokens only.
    """

    model: str = option(DEFAULT_PROXY,
                        "bundled name (smollm2-135m, gemma3-270m), .gguf file, local folder or hub id")
    epochs: int = option(3, "training epochs n; P_0..P_n are recorded (lp needs n >= 1; lp_app one epoch)",
                         minimum=1)
    lr: float = option(2e-5, "peak learning rate (cosine decay after warmup)", minimum=0, exclusive_min=True)
    batch_size: int = option(4, "examples per micro-batch", minimum=1)
    grad_accum: int = option(8, "micro-batches per optimizer step "
                                "(effective batch = batch_size x grad_accum)", minimum=1)
    warmup_ratio: float = option(0.03, "share of the steps in linear warmup", minimum=0, maximum=1,
                                 exclusive_max=True)
    weight_decay: float = option(0.0, "AdamW weight decay on matrices (not on norms and biases)", minimum=0)
    max_grad_norm: float = option(1.0, "gradient clipping; 0 = off", minimum=0)
    seed: int = option(42, "seeds the data order of every epoch (and dropout, LoRA initialisation)")
    lora: bool = option(False, "train LoRA adapters on all linear layers (needs peft)")
    lora_r: int = option(16, "LoRA rank", minimum=1)
    lora_alpha: int = option(32, "LoRA alpha", minimum=1)
    max_length: int = option(DEFAULT_MAX_LENGTH, "tokens per example; longer ones are cut on the right",
                             minimum=2)
    dtype: str = option("float32", "float32, or bfloat16 (autocast over float32 weights: plain bf16 weights "
                                   "lose small updates to rounding)", choices=TRAIN_DTYPES)
    template: str = option("auto", "auto: the model's chat template if it has one, else Alpaca",
                           choices=TEMPLATES)
    batch_tokens: int = option(DEFAULT_BATCH_TOKENS, "padded tokens per batch of the scoring passes",
                               minimum=1)

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum


@dataclass(frozen=True)
class TrainProxyConfig(TrainRecipe):
    """``proxysel train-proxy``: fine-tune the proxy and record ppl_epoch, lp, lp_app, trajectory.

    The training loop (``dynamics.train``) reads this very object: there is no second copy.
    """

    checkpoints: int | None = option(None, "S2L trajectory points (evenly spaced steps incl. 0 and the "
                                           "last); null: 8, or 0 with online; 0: no trajectory", minimum=0)
    lp_epoch: int = option(1, "the epoch i of the lp and lp_app columns", minimum=1)
    online: bool = option(False, "take P_1..P_n from the training forward passes (an approximation that "
                                 "ranks P_1 like the exact pass but biases lp_app; see "
                                 "benchmarks/RESULTS.md)")
    keep_checkpoints: bool = option(False, "keep the weights of every scored step (safetensors) under "
                                           "RUN/stages/train-proxy/checkpoints")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lp_epoch > self.epochs:
            raise FieldError("lp_epoch", f"must be in [1, epochs={self.epochs}], got {self.lp_epoch}")
        if self.checkpoints == 1:
            raise FieldError("checkpoints", "must be 0 (no trajectory) or >= 2 (step 0 ... last step), got 1")

    @property
    def n_checkpoints(self) -> int:
        """``checkpoints`` resolved: 8 by default, 0 (none) with ``online``."""
        if self.checkpoints is not None:
            return self.checkpoints
        return 0 if self.online else 8


@dataclass(frozen=True)
class ReportConfig:
    """``proxysel report``: RUN/report.html."""

    enabled: bool = option(True, "write RUN/report.html at the end", cli=False)
    selection: str | None = option(None, "the selection the page colours by (default: the first one)")
    read_data: bool = option(True, "read the input records (keep rates per source/format, text previews)",
                             negative="--no-data")

    def __post_init__(self) -> None:
        check_fields(self)


# ---------------------------------------------------------------------------- from / to dicts

_NONE_WORDS = ("null", "none", "~", "")
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


class _Text(str):
    """A value typed as text (a command-line flag or a dotted override): parsed by its field's type."""


def _optional(hint: Any) -> tuple[bool, list[Any]]:
    """(None allowed, the other members) of a ``X | Y | None`` hint."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = list(typing.get_args(hint))
        return type(None) in args, [a for a in args if a is not type(None)]
    return False, [hint]


def as_text(value: Any) -> Any:
    """``value`` marked as typed text (a command-line word), to be parsed by its field's type; other
    values are returned as they are."""
    return _Text(value) if isinstance(value, str) else value


def kind_of(hint: Any) -> str:
    """The kind of a field's type: bool, int, float, str, list, mapping, section (None stripped)."""
    return _kind(_optional(hint)[1][0])


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


def coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` (from YAML, or ``_Text``) as the type ``hint``; FieldError(name) if it cannot be."""
    nullable, members = _optional(hint)
    if value is None or (isinstance(value, _Text) and value.strip().lower() in _NONE_WORDS
                         and not (len(members) == 1 and members[0] is str and value.strip())):
        if nullable:
            return None
        raise FieldError(name, f"must be {_describe(hint)}, not null")
    if len(members) == 2 and {_kind(m) for m in members} == {"float", "int"}:  # budget: keep int vs float
        return _number(value, name, hint)
    errors = []
    for member in members:
        try:
            return _coerce_one(value, member, name)
        except FieldError as e:
            errors.append(e)
    raise errors[0] if len(errors) == 1 else FieldError(name, f"must be {_describe(hint)}, got {value!r}")


def _number(value: Any, name: str, hint: Any) -> int | float:
    if isinstance(value, bool):
        raise FieldError(name, f"must be {_describe(hint)}, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, _Text):
        return str(value)  # typed text: the section's own parser reads it (and quotes it in its error)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return value  # the section's own check says what a good value looks like
    raise FieldError(name, f"must be {_describe(hint)}, got {value!r}")


def _coerce_one(value: Any, hint: Any, name: str) -> Any:
    kind = _kind(hint)
    text = isinstance(value, _Text)
    if kind == "section":
        if text:
            value = _yaml_text(value, name)
        if value is None:
            value = {}
        return _build(hint, value, name)
    if kind == "list":
        (item,) = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if text:
            raw = value.strip()
            value = (_yaml_text(value, name) if raw.startswith("[")
                     else [v.strip() for v in raw.split(",") if v.strip()])
        if isinstance(value, (str, int, float)) and not dataclasses.is_dataclass(item):
            value = [value]  # a single signal written without brackets
        if isinstance(value, Mapping) and dataclasses.is_dataclass(item):
            value = [value]  # one selection written as a mapping
        if not isinstance(value, (list, tuple)):
            raise FieldError(name, f"must be a list, got {value!r}")
        if dataclasses.is_dataclass(item):
            return tuple(coerce(v, item, _index_name(name, i, len(value))) for i, v in enumerate(value))
        return tuple(coerce(v, item, name) for v in value)
    if kind == "mapping":
        if text:
            value = _yaml_text(value, name)
        if not isinstance(value, Mapping):
            raise FieldError(name, f"must be a mapping, got {value!r}")
        args = typing.get_args(hint)
        if args and args[1] is str:
            bad = [k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str)]
            if bad:
                raise FieldError(name, f"must map names to names (strings), got {bad[0]!r}")
        return {str(k): v for k, v in value.items()}
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS + _FALSE_WORDS:
            return value.strip().lower() in _TRUE_WORDS
        raise FieldError(name, f"must be true or false, got {value!r}")
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
        raise FieldError(name, f"must be an integer, got {value!r}")
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out = float(value)
        elif isinstance(value, str):  # PyYAML reads 2e-5 (no dot) as a string
            try:
                out = float(value.strip())
            except ValueError:
                raise FieldError(name, f"must be a number, got {value!r}") from None
        else:
            raise FieldError(name, f"must be a number, got {value!r}")
        if not math.isfinite(out):
            raise FieldError(name, f"must be a finite number, got {value!r}")
        return out
    if kind == "str":
        if isinstance(value, str):
            return str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise FieldError(name, f"must be a string, got {value!r}")
    if hint is Any:
        return _yaml_text(value, name) if text else value
    raise TypeError(f"options: no coercion for type {hint!r} of {name}")  # pragma: no cover


def _yaml_text(value: str, name: str) -> Any:
    try:
        return yaml.safe_load(str(value))
    except yaml.YAMLError as e:
        raise FieldError(name, f"cannot read {value!r} as YAML: {e}") from None


def _index_name(name: str, i: int, n: int) -> str:
    return name if n == 1 else f"{name}.{i}"


def join(prefix: str, name: str) -> str:
    """``prefix.name`` (either may be empty)."""
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """``cls(**raw)`` with every field coerced and checked; errors name ``prefix.field``.

    A class may take keys that are not its fields by defining ``_extra_keys(raw) -> (kwargs,
    extra)`` (a selection's parameters come from the selector registry).
    """
    if not isinstance(raw, Mapping):
        raise FieldError(prefix, "must be a mapping of "
                                 f"{', '.join(f.name for f in dataclasses.fields(cls))}, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    hook = getattr(cls, "_split_keys", None)
    extra: dict[str, Any] = {}
    if hook is not None:
        raw, extra = hook(dict(raw), prefix)
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            raise FieldError(join(prefix, str(key)),
                             f"unknown key; {_section_name(prefix)} takes {', '.join(names)}"
                             f"{did_you_mean(key, names)}")
        kwargs[key] = coerce(value, hints[key], join(prefix, key))
    kwargs.update(extra)
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise FieldError(join(prefix, e.name), e.message) from None


def _section_name(prefix: str) -> str:
    return f"'{prefix}'" if prefix else "the config"


_C = TypeVar("_C")


def build_config(cls: type[_C], raw: Mapping[str, Any] | None, source: str | None = None) -> _C:
    """Build and validate the config dataclass ``cls`` (RunConfig, BenchConfig) from a plain dict."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("", f"the top level must be a mapping of sections, got {type(raw).__name__}",
                          source)
    try:
        return _build(cls, raw, "")
    except FieldError as e:
        raise ConfigError(e.name, e.message, source) from None


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        to_dict = getattr(value, "_to_dict", None)
        if to_dict is not None:
            return _plain(to_dict())
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain dicts, lists and scalars (YAML/JSON-ready)."""
    return _plain(config)


def dump_yaml(config: Any, header: str = "") -> str:
    """The config as YAML text, with ``header`` as comment lines; reading it back gives an equal config."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True,
                          default_flow_style=False)
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


def apply_overrides(raw: Mapping[str, Any] | None, overrides: Sequence[str], cls: type) -> dict[str, Any]:
    """A copy of ``raw`` with each ``dotted.field=value`` set; unknown fields are ConfigErrors.

    ``cls``: the config dataclass the fields belong to. A list of sections (``select``) is
    addressed by index or name (``select.0.budget``, ``select.lp-30.budget``); with a single
    element, ``select.budget`` is enough.
    """
    out: dict[str, Any] = copy.deepcopy(dict(raw or {}))
    for text in overrides:
        parts, value = parse_override(text)
        _set(out, cls, parts, _Text(value), "")
    return out


def _set(node: dict[str, Any], cls: type, parts: list[str], value: _Text, prefix: str) -> None:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    key, rest = parts[0], parts[1:]
    name = join(prefix, key)
    open_keys = getattr(cls, "_open_keys", None)  # keys a section takes besides its fields
    if key not in names:
        if open_keys is not None and key in open_keys(node):
            if rest:
                raise ConfigError(name, f"is a parameter; it has no field {'.'.join(rest)!r}")
            nested = node.get("options")
            (nested if isinstance(nested, dict) and key in nested else node)[key] = value  # one place per key
            return
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
            child = {} if child is None or isinstance(child, _Text) else child
            if not isinstance(child, dict):
                raise ConfigError(name, f"is {child!r}, not a mapping; cannot set {'.'.join(rest)} in it")
            node[key] = child
        _set(child, hint, rest, value, name)
        return
    if _kind(hint) == "list" and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        _set_in_list(node, key, typing.get_args(hint)[0], rest, value, name)
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


def _set_in_list(node: dict[str, Any], key: str, item_cls: type, rest: list[str], value: _Text,
                 name: str) -> None:
    items = node.get(key)
    if items is None:
        items = [{}]
    elif isinstance(items, Mapping):
        items = [dict(items)]
    elif not isinstance(items, list):
        raise ConfigError(name, f"must be a mapping or a list of mappings, got {items!r}")
    node[key] = items
    head = rest[0]
    if head.isdigit():
        if int(head) >= len(items):
            raise ConfigError(f"{name}.{head}",
                              f"there are only {len(items)} entries in {key} (0..{len(items) - 1})")
        target, rest, where = int(head), rest[1:], f"{name}.{head}"
    else:
        named = [i for i, it in enumerate(items) if isinstance(it, Mapping) and it.get("name") == head]
        if named:
            target, rest, where = named[0], rest[1:], f"{name}.{head}"
        elif len(items) == 1:
            target, where = 0, name
        else:
            raise ConfigError(f"{name}.{head}", f"there are {len(items)} entries in {key}: address one as "
                                                f"{name}.<index>.{head} or {name}.<name>.{head}")
    if not rest:
        raise ConfigError(where, "name a field of the entry, e.g. .budget")
    if not isinstance(items[target], dict):
        raise ConfigError(where, f"must be a mapping, got {items[target]!r}")
    _set(items[target], item_cls, rest, value, where)


# ----------------------------------------------------------------------------------- loading


def read_yaml_mapping(path: Path) -> dict[str, Any] | None:
    """The top-level mapping of a YAML file (``yaml.safe_load``), or None for an empty file.

    A missing or unreadable file, invalid YAML (named by file:line) or a top level that is no
    mapping is an error with exit code 2.
    """
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
        raise ConfigError("", f"the top level must be a mapping of sections, got {type(raw).__name__}",
                          str(path))
    return raw


def iter_fields(cls: type, prefix: str = "") -> Iterable[tuple[str, Any, Any, str, tuple | None]]:
    """(dotted name, type hint, default, help, allowed values) of every field, for the documentation.

    Sections come before their fields, with default None; list elements are named ``select[]``.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = join(prefix, f.name)
        _, members = _optional(hints[f.name])
        inner = members[0]
        help_text, choices = f.metadata.get("help", ""), choices_of(f)
        if _kind(inner) == "list" and dataclasses.is_dataclass(typing.get_args(inner)[0]):
            yield name, hints[f.name], None, help_text, None
            yield from iter_fields(typing.get_args(inner)[0], f"{name}[]")
        elif dataclasses.is_dataclass(inner):
            yield name, hints[f.name], None, help_text, None
            yield from iter_fields(inner, name)
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            yield name, hints[f.name], default, help_text, choices


# -------------------------------------------------------------- command line and keyword arguments


def flag_of(f: dataclasses.Field, prefix: str = "") -> str:
    """The command-line flag of field ``f``: its ``flag`` metadata, else ``--prefix-field-name``."""
    return f.metadata.get("flag") or "--" + join(prefix, f.name).replace(".", "-").replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser | Any, cls: type, *, skip: Sequence[str] = (),
                  prefix: str = "") -> None:
    """Add one option per field of ``cls`` (nested sections flattened, ``--section-field``).

    Values stay text (``type=str``) and are parsed by ``from_args`` with the field's own type, so a
    flag and a YAML key of the same field accept the same values and fail with the same message.
    The default shown (and used) is the field's default.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("cli", True) or "help" not in f.metadata:
            continue
        _, members = _optional(hints[f.name])
        kind = _kind(members[0])
        dest = join(prefix, f.name)
        if kind == "section":
            add_arguments(parser, members[0], prefix=dest)
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f.metadata["help"]
        flag = flag_of(f, prefix)
        negative = f.metadata.get("negative")
        if kind == "bool":
            if default is not True:
                parser.add_argument(flag, dest=dest, action="store_true", default=default, help=help_text)
            if negative or default is True:
                parser.add_argument(negative or f"--no-{flag[2:]}", dest=dest, action="store_false",
                                    default=default, help=f"sets {flag[2:]} to false" if default is not True
                                    else help_text)
            continue
        # The allowed values go into the help, not to argparse: our own check says what was wrong
        # with a did-you-mean, and exits 2 through the command's error handling.
        choices = choices_of(f)
        if choices:
            help_text = f"{help_text} (one of {', '.join(map(str, choices))})"
        shown = ",".join(default) if kind == "list" and default else default
        nullable, _ = _optional(hints[f.name])
        required = default is None and not nullable  # e.g. select's method and budget
        parser.add_argument(flag, dest=dest, default=shown, required=required,
                            metavar=f.metadata.get("metavar") or f.name.upper(), help=help_text)


def _field_values(cls: type, values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The raw (text or value) settings of ``cls``'s fields found in ``values`` under dotted names."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        dest = join(prefix, f.name)
        _, members = _optional(hints[f.name])
        if _kind(members[0]) == "section" and any(k.startswith(dest + ".") for k in values):
            out[f.name] = _field_values(members[0], values, dest)
        elif dest in values:
            out[f.name] = values[dest]
    return out


def _flag_names(cls: type, prefix: str = "") -> dict[str, str]:
    """dotted field name -> its command-line flag (sections flattened)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        dest = join(prefix, f.name)
        _, members = _optional(hints[f.name])
        if _kind(members[0]) == "section":
            out.update(_flag_names(members[0], dest))
        out[dest] = flag_of(f, prefix)
    return out


def from_args(cls: type[_C], args: argparse.Namespace) -> _C:
    """Build ``cls`` from the options ``add_arguments(parser, cls)`` added; errors name the flag."""
    values = {k: (_Text(v) if isinstance(v, str) else v) for k, v in vars(args).items()}
    raw = _field_values(cls, values)
    try:
        return _build(cls, raw, "")
    except FieldError as e:
        raise ConfigError(e.name, e.message, flag=_flag_names(cls).get(e.name, e.name)) from None


def from_kwargs(classes: Sequence[type], kwargs: Mapping[str, Any], *, what: str) -> list[Any]:
    """Build each class of ``classes`` from the keyword arguments that are its fields.

    A keyword that is no field of any of them is an error with a did-you-mean; ``what`` names the
    function in it (``proxysel.score``). Nested sections are passed as mappings
    (``density={"R": 64}``) or as the section object. Errors name the keyword.
    """
    names = {f.name: cls for cls in classes for f in dataclasses.fields(cls)}
    unknown = [k for k in kwargs if k not in names]
    if unknown:
        raise UsageError(f"{what}() got an unexpected keyword argument {unknown[0]!r}"
                         f"{did_you_mean(unknown[0], names)}")
    out = []
    for cls in classes:
        # strings are read as a flag's text is ("loss,ifd" is a list of two signals)
        given = {k: (config_to_dict(v) if dataclasses.is_dataclass(v) else as_text(v))
                 for k, v in kwargs.items() if names[k] is cls}
        try:
            out.append(_build(cls, given, ""))
        except FieldError as e:
            raise ConfigError(e.name, e.message, flag=e.name) from None
    return out


def fields_of(config: Any) -> dict[str, Any]:
    """The config's fields as keyword arguments (nested sections as mappings): ``from_kwargs``'s inverse."""
    return {f.name: (config_to_dict(getattr(config, f.name))
                     if dataclasses.is_dataclass(getattr(config, f.name)) else getattr(config, f.name))
            for f in dataclasses.fields(config)}
