"""``proxysel run``: the whole pipeline from one config, as a sequence of API calls that resume.

Steps, in order (each one is an ``api`` call that opens and closes the run folder):

1. ``train-proxy``   ``api.train_proxy`` (if the config has ``train_proxy``)
2. ``score``         ``api.score`` with ``score.signals`` (if the config has ``score``)
3. ``select:NAME``   ``api.select`` for every selection
4. ``report``        ``api.report`` (unless ``report.enabled: false``)

What reruns. Every step has a *key*: the config sections it depends on (its own section, plus
``data`` and ``runtime``; a selection also depends on both proxy sections, the report on
everything). When a step finishes, its key is recorded in ``manifest["pipeline"]["steps"]``. On
the next ``proxysel run`` into the same folder:

- a proxy step is always called, because its stages resume by fingerprint: a finished stage
  recomputes nothing (``shards_computed: 0``), an interrupted one picks up where it stopped. If
  its key changed since it last finished, it is called with ``overwrite=True``, so the store
  replaces exactly the stages whose fingerprint changed (a new ``train_proxy.model`` retrains
  the proxy; the ``embedding`` stage of ``score`` is kept);
- a selection or the report runs again only if its key changed, a step before it computed
  something in this invocation, or its output is missing; otherwise it is "up to date".

So rerunning the same command is a no-op once everything finished, ``select.budget=0.2`` reruns
that selection and the report, and ``train_proxy.model=...`` reruns training, the selections and
the report. ``overwrite=True`` (``proxysel run --overwrite``) also replaces stages that other
commands left with other parameters in the folder (the store refuses them otherwise).

The resolved config is written to ``RUN/config.yaml`` and ``manifest["pipeline"]["config"]``
before any work; ``manifest["pipeline"]["last"]["ran"]`` lists the steps that did work in the
latest invocation, and each step's record says which stages it computed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from proxysel.config import (ConfigError, RunConfig, SelectConfig, config_to_dict, dump_config)
from proxysel.errors import UsageError

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
UP_TO_DATE = "up to date"
RAN = "ran"

#: score signal -> the columns (or ``embedding``: the embeddings file) it provides
SIGNAL_COLUMNS = {
    "loss": ("loss", "ppl", "n_tokens", "n_response_tokens", "truncated"),
    "ifd": ("ifd", "ifd_loss"),
    "ask_llm": ("ask_llm",),
    "embedding": ("embedding",),
    "density": ("density",),
}
#: where a missing column comes from, for the error message
COLUMN_SOURCE = {
    "lp": "a train_proxy section", "lp_app": "a train_proxy section", "ppl_epoch": "a train_proxy section",
    "trajectory": "a train_proxy section with checkpoints > 0", "loss": "score.signals: [loss]",
    "ppl": "score.signals: [loss]", "ifd": "score.signals: [ifd]", "ifd_loss": "score.signals: [ifd]",
    "ask_llm": "score.signals: [ask_llm]", "embedding": "score.signals: [embedding]",
    "density": "score.signals: [embedding, density]",
}


@dataclass
class StepOutcome:
    """What one step did: ``action`` is "ran" or "up to date"; ``computed`` the stages it computed."""

    name: str
    action: str
    seconds: float = 0.0
    computed: list[str] = field(default_factory=list)
    why: str = ""


@dataclass
class PipelineResult:
    out: Path
    steps: list[StepOutcome]
    selections: dict[str, Path]
    report: Path | None
    data: Path


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------- step keys


def step_keys(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """Step name -> the config it depends on (plain dicts), in pipeline order."""
    d = config_to_dict(cfg)
    runtime = {k: v for k, v in d["runtime"].items() if k not in cfg.runtime.RESULT_NEUTRAL}
    base = {"data": d["data"], "runtime": runtime}
    keys: dict[str, dict[str, Any]] = {}
    if cfg.train_proxy is not None:
        keys["train-proxy"] = {**base, "train_proxy": d["train_proxy"]}
    if cfg.score is not None:
        keys["score"] = {**base, "score": d["score"]}
    proxy = {**base, "train_proxy": d["train_proxy"], "score": d["score"]}
    for sel in d["select"]:
        keys[f"select:{sel['name']}"] = {**proxy, "select": sel}
    if cfg.report.enabled:
        keys["report"] = {**proxy, "select": d["select"], "report": d["report"],
                          "report_selection": report_selection(cfg)}
    return keys


def report_selection(cfg: RunConfig) -> str | None:
    """The selection the report colours by: ``report.selection``, else the first configured one."""
    if cfg.report.selection is not None:
        return cfg.report.selection
    return cfg.select[0].name if cfg.select else None


# ---------------------------------------------------------------------------------- preflight


def _selector_params(sel: SelectConfig, has_cluster_column: bool) -> dict[str, Any]:
    from proxysel.selection import DEFAULT_CLUSTERS, EMBEDDING_CLUSTERED

    params = sel.params()
    if sel.stratify:
        params["stratify"] = "source"
    if sel.method in EMBEDDING_CLUSTERED and params.get("within_clusters", True) and "clusters" not in params \
            and not has_cluster_column:
        params["clusters"] = DEFAULT_CLUSTERS  # as `proxysel select` does
    return params


def provided_columns(cfg: RunConfig) -> set[str]:
    """Columns of scores.parquet (and ``embedding``) that the config's proxy stages write."""
    cols: set[str] = set()
    if cfg.train_proxy is not None:
        cols |= {"ppl_epoch", "lp", "lp_app", "n_tokens", "n_response_tokens", "truncated"}
        tp = cfg.train_proxy
        checkpoints = tp.checkpoints if tp.checkpoints is not None else (0 if tp.online else 8)
        if checkpoints:
            cols.add("trajectory")
    if cfg.score is not None:
        for s in cfg.score.signals:
            cols |= set(SIGNAL_COLUMNS[s])
    return cols


def preflight(cfg: RunConfig, out: Path) -> None:
    """Check, before any model work, that every selection can run on what the config computes
    (or the run folder already holds). ConfigError naming the field otherwise."""
    import pyarrow.parquet as pq

    from proxysel.selectors.registry import get_selector

    existing: set[str] = set()
    if (out / "scores.parquet").exists():
        existing |= set(pq.read_schema(out / "scores.parquet").names)
    if (out / "embeddings.parquet").exists():
        existing.add("embedding")
    have = provided_columns(cfg) | existing
    if cfg.score is not None and "density" in cfg.score.signals and "embedding" not in have:
        raise ConfigError("score.signals", "density reads the embeddings: add embedding to score.signals")
    if cfg.data.path is not None and not Path(cfg.data.path).exists():
        raise ConfigError("data.path", f"{cfg.data.path} does not exist (relative paths are relative to the "
                                       f"working directory {Path.cwd()})")
    for i, sel in enumerate(cfg.select):
        where = "select" if len(cfg.select) == 1 else f"select.{i}"
        cls = get_selector(sel.method)
        try:
            selector = cls(**_selector_params(sel, "cluster" in existing))
        except TypeError as e:
            raise ConfigError(where, f"method {sel.method} does not take one of the options given: {e}") from None
        except ValueError as e:
            raise ConfigError(where, f"method {sel.method}: {e}") from None
        needed = list(selector.required_columns())
        features = getattr(selector, "cluster_features", None)
        clustered = bool(getattr(selector, "within_clusters", False)) or sel.method == "s2l"
        if clustered and getattr(selector, "clusters", None) is not None and features:
            needed.append(features)
        elif clustered and getattr(selector, "clusters", None) is None:
            needed.append("cluster")
        for col in dict.fromkeys(needed):
            if col not in have:
                src = COLUMN_SOURCE.get(col, f"a stage that writes the column '{col}'")
                raise ConfigError(f"{where}.method", f"{sel.method} reads '{col}', which this config does not "
                                                     f"compute and {out} does not hold; add {src}")


# ------------------------------------------------------------------------------------ helpers


def _stage_state(out: Path) -> dict[str, tuple[str, bool]]:
    """Stage name -> (fingerprint.json text, COMPLETE present), to tell afterwards what was computed."""
    folder = out / "stages"
    state = {}
    if folder.is_dir():
        for p in folder.iterdir():
            if p.is_dir() and not p.name.startswith("."):
                fp = p / "fingerprint.json"
                state[p.name] = (fp.read_text(encoding="utf-8") if fp.exists() else "", (p / "COMPLETE").exists())
    return state


def _computed(before: dict[str, tuple[str, bool]], after: dict[str, tuple[str, bool]]) -> list[str]:
    """Stages created, replaced or completed between the two snapshots."""
    return sorted(name for name, (fp, done) in after.items()
                  if name not in before or before[name][0] != fp or (done and not before[name][1]))


def _diff(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    from proxysel.store.run import fingerprint_diff

    if old is None:
        return "first run of this step"
    lines = fingerprint_diff(old, new)
    return "; ".join(lines[:6]) + (f"; ... ({len(lines)} changes)" if len(lines) > 6 else "")


def _read_pipeline(out: Path) -> dict[str, Any]:
    import json

    path = out / "manifest.json"
    if not path.exists():
        return {}
    try:
        block = json.loads(path.read_text(encoding="utf-8")).get("pipeline")
    except ValueError:
        return {}
    return block if isinstance(block, dict) else {}


def _update_pipeline(out: Path, **fields: Any) -> None:
    """Merge ``fields`` into ``manifest["pipeline"]`` (``steps`` entries merge by name)."""
    from proxysel.store import Run

    with Run.open(out, create=False) as run:
        block = dict(run.manifest.get("pipeline") or {})
        steps = dict(block.get("steps") or {})
        steps.update(fields.pop("steps", {}))
        block.update(fields)
        block["steps"] = steps
        run.update_manifest(pipeline=block)


# -------------------------------------------------------------------------------------- run


def run_pipeline(cfg: RunConfig, *, source: str | None = None, overwrite: bool = False) -> PipelineResult:
    """Run ``cfg`` into ``cfg.out`` (see the module docstring for what reruns); returns what happened."""
    from proxysel import api
    from proxysel.store import Run
    from proxysel.store.atomic import atomic_write_text

    if cfg.out is None:
        raise ConfigError("out", "is required (the run folder)")
    out = Path(cfg.out)
    t_start = time.perf_counter()
    keys = step_keys(cfg)
    previous = (_read_pipeline(out).get("steps") or {}) if out.exists() else {}
    header = (f"The resolved config of the latest `proxysel run` into this folder ({_now()}).\n"
              f"Source: {source or 'built in code'}. Rerun it with: proxysel run {out / CONFIG_FILE}")
    preflight(cfg, out)
    with Run.open(out) as run:  # makes the folder (and refuses one that is not a run folder)
        atomic_write_text(out / CONFIG_FILE, dump_config(cfg, header=header))
        block = dict(run.manifest.get("pipeline") or {})
        block.update(config=config_to_dict(cfg), config_file=source,
                     last={"started": _now(), "finished": None, "steps": list(keys), "ran": []})
        block.setdefault("steps", {})
        run.update_manifest(pipeline=block)

    if cfg.data.demo is not None:
        from proxysel.data.sharegpt_demo import demo_pool_path

        data = demo_pool_path(out / "data", n=cfg.data.demo)
    else:
        data = Path(cfg.data.path)
    read = cfg.data.read_options()
    rt = cfg.runtime
    common = dict(device=rt.device, shard_size=rt.shard_size, trust_remote_code=rt.trust_remote_code,
                  allow_pickle=rt.allow_pickle, **read)

    outcomes: list[StepOutcome] = []
    ran: list[str] = []
    upstream_computed = False
    selections: dict[str, Path] = {}
    report_path: Path | None = None

    def record(name: str, outcome: StepOutcome, changed: bool) -> None:
        outcomes.append(outcome)
        if outcome.action == RAN:
            ran.append(name)
        _update_pipeline(out, steps={name: {"key": keys[name], "action": outcome.action,
                                            "computed": outcome.computed, "seconds": round(outcome.seconds, 3),
                                            "config_changed": changed, "why": outcome.why, "finished": _now()}},
                         last={**block["last"], "ran": list(ran)})
        extra = f" (computed: {', '.join(outcome.computed)})" if outcome.computed else ""
        log.info("step %s: %s in %.1fs%s%s", name, outcome.action, outcome.seconds, extra,
                 f" [{outcome.why}]" if outcome.why and outcome.action == RAN else "")

    # -- proxy stages: always called (they resume); overwrite only where this step's config changed
    for name in ("train-proxy", "score"):
        if name not in keys:
            continue
        prev = previous.get(name)
        changed = prev is None or prev.get("key") != keys[name]
        # A failed attempt with another config may have left its stages behind: replace them too.
        replace = overwrite or (prev is not None and (changed or prev.get("attempt", keys[name]) != keys[name]))
        _update_pipeline(out, steps={name: {**(prev or {}), "attempt": keys[name]}})
        why = _diff(prev.get("key") if prev else None, keys[name]) if changed else ""
        if changed and prev is not None:
            log.info("step %s: config changed (%s): its changed stages are recomputed", name, why)
        before = _stage_state(out)
        t0 = time.perf_counter()
        if name == "train-proxy":
            api.train_proxy(data, out=out, overwrite=replace, **config_to_dict(cfg.train_proxy), **common)
        else:
            sc = cfg.score
            api.score(data, out=out, signals=list(sc.signals), model=sc.model, judge=sc.judge,
                      embedder=sc.embedder, max_length=sc.max_length, batch_tokens=sc.batch_tokens,
                      dtype=sc.dtype, template=sc.template, density=sc.density.options(), overwrite=replace,
                      backend=rt.backend, ray_address=rt.ray_address, ray_actors=rt.ray_actors,
                      ray_cpus_per_actor=rt.ray_cpus_per_actor, **common)
        computed = _computed(before, _stage_state(out))
        did_work = bool(computed) or (changed and prev is not None)
        upstream_computed |= did_work or prev is None
        record(name, StepOutcome(name, RAN if did_work or prev is None else UP_TO_DATE,
                                 time.perf_counter() - t0, computed, why), changed)

    # -- selections: rerun when their key changed, a proxy stage did work, or the output is gone
    for sel in cfg.select:
        name = f"select:{sel.name}"
        prev = previous.get(name)
        folder = out / "selections" / sel.name
        changed = prev is None or prev.get("key") != keys[name]
        missing = not (folder / "meta.json").exists()
        if not (changed or upstream_computed or missing):
            record(name, StepOutcome(name, UP_TO_DATE), False)
            selections[sel.name] = folder
            continue
        why = _diff(prev.get("key") if prev else None, keys[name]) if changed else \
            ("its output is missing" if missing else "a proxy stage was recomputed")
        t0 = time.perf_counter()
        params = sel.params()
        _update_pipeline(out, steps={name: {**(prev or {}), "attempt": keys[name]}})
        selections[sel.name] = api.select(out, method=sel.method, budget=sel.budget, seed=sel.seed, name=sel.name,
                                          stratify=sel.stratify, overwrite=overwrite or prev is not None,
                                          **params)
        record(name, StepOutcome(name, RAN, time.perf_counter() - t0, [], why), changed)

    # -- the report: rerun when anything before it ran or its config changed
    if "report" in keys:
        prev = previous.get("report")
        changed = prev is None or prev.get("key") != keys["report"]
        path = out / "report.html"
        if changed or ran or not path.exists():
            t0 = time.perf_counter()
            why = _diff(prev.get("key") if prev else None, keys["report"]) if changed else \
                ("steps before it ran" if ran else "report.html is missing")
            report_path = api.report(out, selection=report_selection(cfg), read_data=cfg.report.read_data)
            record("report", StepOutcome("report", RAN, time.perf_counter() - t0, [], why), changed)
        else:
            report_path = path
            record("report", StepOutcome("report", UP_TO_DATE), False)

    _update_pipeline(out, last={**block["last"], "finished": _now(), "ran": list(ran),
                                "seconds": round(time.perf_counter() - t_start, 3)})
    log.info("run %s: %s in %.1fs", out, f"ran {', '.join(ran)}" if ran else "everything up to date",
             time.perf_counter() - t_start)
    return PipelineResult(out=out, steps=outcomes, selections=selections, report=report_path, data=data)


def describe(out: str | Path) -> str:
    """Printable lines about the latest ``proxysel run`` into ``out``: what each step did, where the
    subsets, the report and the config are (read from the manifest)."""
    import json

    out = Path(out)
    block = _read_pipeline(out)
    last = block.get("last") or {}
    steps = block.get("steps") or {}
    total = last.get("seconds")
    lines = [f"run folder: {out}" + (f" ({total:.0f}s)" if isinstance(total, (int, float)) else "")]
    ran = set(last.get("ran") or [])
    for name in last.get("steps") or []:
        s = steps.get(name) or {}
        if name in ran:
            extra = f", computed {', '.join(s.get('computed') or [])}" if s.get("computed") else ""
            lines.append(f"  {name:<32} ran ({s.get('seconds', 0):.1f}s{extra})")
        else:
            lines.append(f"  {name:<32} {UP_TO_DATE}")
    for name in last.get("steps") or []:
        if not name.startswith("select:"):
            continue
        folder = out / "selections" / name[len("select:"):]
        try:
            meta = json.loads((folder / "meta.json").read_text())
            lines.append(f"subset {name[len('select:'):]}: {meta['n_selected']} of {meta['n_pool']} examples -> "
                         f"{folder / meta['file']}")
        except (OSError, ValueError, KeyError):
            lines.append(f"subset {name[len('select:'):]}: {folder}")
    if "report" in (last.get("steps") or []):
        lines.append(f"report: {out / 'report.html'}")
    lines.append(f"config: {out / CONFIG_FILE}")
    return "\n".join(lines)


def check_overrides(overrides: Any) -> list[str]:
    if isinstance(overrides, str):
        raise UsageError("overrides must be a list of 'dotted.field=value' strings, not one string")
    return list(overrides or ())
