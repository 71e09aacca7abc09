"""``proxysel run``: the whole pipeline from one config, as a sequence of API calls that resume.

Steps, in order (each one is the stage the command of that name runs; each opens and closes the
run folder):

1. ``train-proxy``   ``stages.train_proxy`` (if the config has ``train_proxy``)
2. ``score``         ``stages.score`` with ``score.signals`` (if the config has ``score``)
3. ``select:NAME``   ``stages.select`` for every selection (a ``from`` before the selections reading it)
4. ``report``        ``reporting.write_report`` (unless ``report.enabled: false``)

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

from proxysel.config import ConfigError, RunConfig, config_to_dict, dump_config
from proxysel.data.sharegpt_demo import demo_pool_path
from proxysel.errors import UsageError
from proxysel.reporting import write_report
from proxysel.signals import available_signals, derivable, get_signal, producer_of
from proxysel.stages.score import score
from proxysel.stages.select import select_run
from proxysel.stages.train_proxy import train_proxy
from proxysel.store import Run, RunFolder, fingerprint_diff
from proxysel.store.atomic import atomic_write_text

log = logging.getLogger(__name__)

UP_TO_DATE = "up to date"
RAN = "ran"


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
    base = {"data": d["data"], "reference": d["reference"], "runtime": runtime}
    keys: dict[str, dict[str, Any]] = {}
    if cfg.train_proxy is not None:
        keys["train-proxy"] = {**base, "train_proxy": d["train_proxy"]}
    if cfg.score is not None:
        keys["score"] = {**base, "score": d["score"]}
    proxy = {**base, "train_proxy": d["train_proxy"], "score": d["score"]}
    by_name = {sel["name"]: sel for sel in d["select"]}
    for sel in d["select"]:
        chain, node = [], sel
        while node.get("from") is not None:  # a chain depends on the selections it starts from
            node = by_name[node["from"]]
            chain.append(node)
        keys[f"select:{sel['name']}"] = {**proxy, "select": sel, **({"from": chain} if chain else {})}
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


def provided_columns(cfg: RunConfig) -> set[str]:
    """Columns of scores.parquet (and vector sets) that the config's proxy stages write, as the signal
    registry declares them."""
    cols: set[str] = set()
    for name in available_signals():
        cls = get_signal(name)
        section = cfg.train_proxy if cls.command == "train-proxy" else cfg.score
        if section is not None and cls.provided_by(section):
            cols |= set(cls.columns)
    return cols


def preflight(cfg: RunConfig, out: Path) -> None:
    """Check, before any model work, that every stage can run on what the config computes (or the run
    folder already holds): the checks the stages make, asked of the same registries. ConfigError
    naming the field otherwise."""
    folder = RunFolder(out)
    have = provided_columns(cfg) | set(folder.score_columns()) | set(folder.vector_sets())
    if cfg.data.path is not None and not Path(cfg.data.path).exists():
        raise ConfigError("data.path", f"{cfg.data.path} does not exist (relative paths are relative to the "
                                       f"working directory {Path.cwd()})")
    if cfg.reference is not None and not Path(cfg.reference).exists():
        raise ConfigError("reference", f"{cfg.reference} does not exist")
    if cfg.score is not None:
        for name in cfg.score.signals:
            cls = get_signal(name)
            for dep in cls.requires:
                if dep not in have:
                    raise ConfigError("score.signals",
                                      f"{name} reads the {dep} signal: add {dep} to score.signals")
            if cls.needs_reference and cfg.reference is None:
                raise ConfigError("reference", f"score.signals {name} scores the pool against a reference "
                                               "set: give reference: FILE")
    for i, sel in enumerate(cfg.select):
        where = "select" if len(cfg.select) == 1 else f"select.{i}"
        selector = sel.selector()
        if selector.needs_reference and cfg.reference is None:
            raise ConfigError("reference",
                              f"{where}: {sel.method} reads a reference set: give reference: FILE")
        for col in dict.fromkeys(selector.reads()):
            if col not in have and not derivable(col, have):
                producer = producer_of(col)
                how = producer.how_to_make("DATA", str(out)) if producer else f"a stage that writes '{col}'"
                section = "a train_proxy section" if producer and producer.command == "train-proxy" else \
                    f"{producer.name} to score.signals" if producer else how
                raise ConfigError(f"{where}.method", f"{sel.method} reads '{col}', which this config does "
                                                     f"not compute and {out} does not hold; add {section} "
                                                     f"({how})")


# ------------------------------------------------------------------------------------ helpers


def _stage_state(out: Path) -> dict[str, Any]:
    """Stage name -> its StageState (fingerprint text, complete), to tell afterwards what was computed."""
    return RunFolder(out).stage_states()


def _computed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Stages created, replaced or completed between the two snapshots."""
    return sorted(name for name, st in after.items()
                  if name not in before or before[name].fingerprint != st.fingerprint
                  or (st.complete and not before[name].complete))


def _diff(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    if old is None:
        return "first run of this step"
    lines = fingerprint_diff(old, new)
    return "; ".join(lines[:6]) + (f"; ... ({len(lines)} changes)" if len(lines) > 6 else "")


def _read_pipeline(out: Path) -> dict[str, Any]:
    try:
        block = RunFolder(out).manifest.get("pipeline")
    except Exception:  # a damaged manifest: the stages say so when they open the run
        return {}
    return block if isinstance(block, dict) else {}


def _update_pipeline(out: Path, **fields: Any) -> None:
    """Merge ``fields`` into ``manifest["pipeline"]`` (``steps`` entries merge by name)."""
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
    if cfg.out is None:
        raise ConfigError("out", "is required (the run folder)")
    out = Path(cfg.out)
    t_start = time.perf_counter()
    keys = step_keys(cfg)
    previous = (_read_pipeline(out).get("steps") or {}) if out.exists() else {}
    header = (f"The resolved config of the latest `proxysel run` into this folder ({_now()}).\n"
              f"Source: {source or 'built in code'}. "
              f"Rerun it with: proxysel run {RunFolder(out).config_path}")
    preflight(cfg, out)
    with Run.open(out) as run:  # makes the folder (and refuses one that is not a run folder)
        atomic_write_text(run.config_path, dump_config(cfg, header=header))
        data = (demo_pool_path(run.data_dir, n=cfg.data.demo) if cfg.data.demo is not None
                else Path(cfg.data.path))
        block = dict(run.manifest.get("pipeline") or {})
        block.update(config=config_to_dict(cfg), config_file=source,
                     last={"started": _now(), "finished": None, "steps": list(keys), "ran": []})
        block.setdefault("steps", {})
        run.update_manifest(pipeline=block)

    read = cfg.data.read()

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
                                            "computed": outcome.computed,
                                            "seconds": round(outcome.seconds, 3),
                                            "config_changed": changed, "why": outcome.why,
                                            "finished": _now()}},
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
        replace = overwrite or (prev is not None
                                and (changed or prev.get("attempt", keys[name]) != keys[name]))
        _update_pipeline(out, steps={name: {**(prev or {}), "attempt": keys[name]}})
        why = _diff(prev.get("key") if prev else None, keys[name]) if changed else ""
        if changed and prev is not None:
            log.info("step %s: config changed (%s): its changed stages are recomputed", name, why)
        before = _stage_state(out)
        t0 = time.perf_counter()
        if name == "train-proxy":
            train_proxy(data, out=out, config=cfg.train_proxy, read=read, runtime=cfg.runtime,
                        overwrite=replace)
        else:
            score(data, out=out, config=cfg.score, read=read, runtime=cfg.runtime, reference=cfg.reference,
                  overwrite=replace)
        computed = _computed(before, _stage_state(out))
        did_work = bool(computed) or (changed and prev is not None)
        upstream_computed |= did_work or prev is None
        record(name, StepOutcome(name, RAN if did_work or prev is None else UP_TO_DATE,
                                 time.perf_counter() - t0, computed, why), changed)

    # -- selections (a chain's parent first): rerun when their key changed, a proxy stage or their
    # parent did work, or the output is gone
    folder = RunFolder(out)
    for sel in cfg.ordered_selections():
        name = f"select:{sel.name}"
        prev = previous.get(name)
        changed = prev is None or prev.get("key") != keys[name]
        missing = not folder.has_selection(sel.name)
        parent_ran = sel.parent is not None and f"select:{sel.parent}" in ran
        if not (changed or upstream_computed or missing or parent_ran):
            record(name, StepOutcome(name, UP_TO_DATE), False)
            selections[sel.name] = folder.selection_folder(sel.name)
            continue
        why = _diff(prev.get("key") if prev else None, keys[name]) if changed else \
            ("its output is missing" if missing else "the selection it starts from was redone" if parent_ran
             else "a proxy stage was recomputed")
        t0 = time.perf_counter()
        _update_pipeline(out, steps={name: {**(prev or {}), "attempt": keys[name]}})
        selections[sel.name] = select_run(out, sel, reference=cfg.reference,
                                          overwrite=overwrite or prev is not None)
        record(name, StepOutcome(name, RAN, time.perf_counter() - t0, [], why), changed)

    # -- the report: rerun when anything before it ran or its config changed
    if "report" in keys:
        prev = previous.get("report")
        changed = prev is None or prev.get("key") != keys["report"]
        path = folder.report_path
        if changed or ran or not path.exists():
            t0 = time.perf_counter()
            why = _diff(prev.get("key") if prev else None, keys["report"]) if changed else \
                ("steps before it ran" if ran else "report.html is missing")
            report_path = write_report(out, selection=report_selection(cfg), read_data=cfg.report.read_data)
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
    folder = RunFolder(out)
    for name in last.get("steps") or []:
        if not name.startswith("select:"):
            continue
        sel = name[len("select:"):]
        meta, _ = folder.read_selection_meta(sel)
        if "n_selected" in meta and "file" in meta:
            lines.append(f"subset {sel}: {meta['n_selected']} of {meta['n_pool']} examples -> "
                         f"{folder.selection_folder(sel) / meta['file']}")
        else:
            lines.append(f"subset {sel}: {folder.selection_folder(sel)}")
    if "report" in (last.get("steps") or []):
        lines.append(f"report: {folder.report_path}")
    lines.append(f"config: {folder.config_path}")
    return "\n".join(lines)


def check_overrides(overrides: Any) -> list[str]:
    if isinstance(overrides, str):
        raise UsageError("overrides must be a list of 'dotted.field=value' strings, not one string")
    return list(overrides or ())
