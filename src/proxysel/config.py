"""The ``proxysel run`` config: one YAML file for the whole pipeline, built from the sections that
define each command's options (``proxysel.options``, ``signals.config``, ``selectors.config``).

A config file names the whole pipeline (see ``configs/`` for one per method)::

    out: runs/lp_app                 # the run folder (default: runs/<config file name>)
    data: {demo: 300}                # or {path: pool.jsonl, format: ..., limit: ...}
    reference: ref.jsonl             # optional: what the model should be good at (color, rds)
    train_proxy: {epochs: 1, checkpoints: 0}
    score: {signals: [embedding]}
    select: {method: lp_app, budget: 0.3, clusters: 10}   # one mapping, or a list of them
    report: {enabled: true}

``load_config(path, overrides)`` reads it with ``yaml.safe_load`` only, applies dotted overrides
(``select.budget=0.2``, ``train_proxy.model=gemma3-270m``, ``select.1.seed=3``,
``score=null``) with the type of the field they name, and returns a validated ``RunConfig``.
Every section checks itself in ``__post_init__`` with the same code the commands use; any mistake
(an unknown key, a wrong type, a value outside the allowed ones) is a ``ConfigError`` (exit code 2)
that names the dotted field and what is allowed, with a did-you-mean for near misses.
``dump_config`` writes the resolved config back as YAML; loading that gives an equal ``RunConfig``.

Each field's ``help`` metadata is its documentation: ``docs/cli.md`` is generated from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from proxysel.options import (
    ConfigError,
    FieldError,
    ReadConfig,
    ReportConfig,
    RuntimeConfig,
    TrainProxyConfig,
    build_config,
    config_to_dict,
    did_you_mean,
    dump_yaml,
    iter_fields,
    option,
    read_yaml_mapping,
)
from proxysel.options import apply_overrides as _apply_overrides
from proxysel.selectors.config import SelectConfig, check_chains, ordered_by_parent
from proxysel.signals.config import ScoreConfig

__all__ = ["ConfigError", "DataConfig", "ReportConfig", "RunConfig", "RuntimeConfig", "ScoreConfig",
           "SelectConfig", "TrainProxyConfig", "apply_overrides", "config_from_dict", "config_to_dict",
           "dump_config", "iter_fields", "load_config"]


@dataclass(frozen=True)
class DataConfig(ReadConfig):
    """The candidate pool and how to read it (``proxysel score`` DATA and its read options)."""

    path: str | None = option(None, "the pool: a .jsonl, .jsonl.gz, .json, .parquet file, a folder of them "
                                    "or a HF datasets folder (relative to the working directory)")
    demo: int | None = option(None, "instead of path: the first N real ShareGPT conversations of the bundled "
                                    "demo sample (written to RUN/data/)", minimum=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.path is None) == (self.demo is None):
            raise FieldError("path", "give exactly one of data.path (your pool) and data.demo (N bundled "
                                     "ShareGPT conversations)")
        if self.path is not None and not self.path.strip():
            raise FieldError("path", "is empty")

    def read(self) -> ReadConfig:
        """The read options alone (what the pool and the reference set are read with)."""
        return ReadConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ReadConfig)})


@dataclass(frozen=True)
class RunConfig:
    """The whole pipeline: data -> proxy stage(s) -> selections -> report."""

    out: str | None = option(None, "the run folder, relative to the working directory (default: runs/<config "
                                   "file name>)")
    data: DataConfig = option(None, "the candidate pool")
    reference: str | None = option(None, "the reference set: examples of what the model should be good "
                                         "at, read like data (only reference-aware signals and "
                                         "selectors read it)")
    runtime: RuntimeConfig = option(RuntimeConfig(), "device and sharding, shared by the proxy stages")
    train_proxy: TrainProxyConfig | None = option(None, "proxy training (lp, lp_app, trajectory); null: none")
    score: ScoreConfig | None = option(None, "scoring signals (loss, ifd, ask_llm, embedding, density, ...); "
                                             "null: none")
    select: tuple[SelectConfig, ...] = option((), "one selection, or a list of them")
    report: ReportConfig = option(ReportConfig(), "the report")

    def __post_init__(self) -> None:
        if self.data is None:
            raise FieldError("data", "is required: {path: POOL} or {demo: N}")
        if self.train_proxy is None and self.score is None:
            raise FieldError("score", "the config has no proxy stage: give train_proxy, score or both")
        names = [s.name for s in self.select]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise FieldError("select", f"two selections are named {dups[0]!r}; give each a distinct name")
        check_chains(self.select, "select")
        if self.report.selection is not None and self.report.selection not in names:
            raise FieldError("report.selection", f"{self.report.selection!r} is not one of the selections "
                                                 f"{names}{did_you_mean(self.report.selection, names)}")

    @property
    def selections(self) -> dict[str, SelectConfig]:
        return {s.name: s for s in self.select}

    def ordered_selections(self) -> list[SelectConfig]:
        """The selections in an order where every ``from`` comes before the selections that read it."""
        return ordered_by_parent(self.select)


def config_from_dict(raw: Mapping[str, Any] | None, source: str | None = None) -> RunConfig:
    """Build and validate a RunConfig from a plain dict (as ``yaml.safe_load`` gives)."""
    return build_config(RunConfig, raw, source)


def apply_overrides(raw: Mapping[str, Any] | None, overrides: Sequence[str],
                    cls: type = RunConfig) -> dict[str, Any]:
    """A copy of ``raw`` with each ``dotted.field=value`` set (``proxysel.options.apply_overrides``)."""
    return _apply_overrides(raw, overrides, cls)


def dump_config(config: Any, header: str = "") -> str:
    """The config as YAML text; ``load_config`` of it gives an equal config."""
    return dump_yaml(config, header)


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

