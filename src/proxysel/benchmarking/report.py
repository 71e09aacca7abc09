"""results.csv, keep_rates.csv, results.md, stats.json, ledger.json and plot.png from the cell
results of a bench.

Aggregation: for every (selector, budget), and for ``full``, the mean, the sample standard
deviation (ddof=1; 0 with one seed) and the min and max over seeds of each metric. The paired
comparisons and verdicts (``analysis.comparisons``) and the ledger (``analysis.ledger_rows``) are
computed from the cells' per-example arrays and the proxy run's records.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from proxysel.benchmarking.analysis import comparisons, headline_of, ledger_rows
from proxysel.store.atomic import atomic_write_json, atomic_write_text

METRICS = ("eval_loss", "eval_loss_macro", "exact_match", "exact_match_macro", "win_rate")
PERCENT = ("exact_match", "exact_match_macro", "win_rate")  # shown in %
#: the plot's panels: the macro metric (the pooled one for cells written before the macro was kept)
PLOT_METRICS = (("eval_loss_macro", "eval_loss"), ("exact_match_macro", "exact_match"),
                ("win_rate", "win_rate"))
YLABELS = {"eval_loss": "held-out loss, pooled (nats, lower is better)",
           "eval_loss_macro": "macro held-out loss over groups (nats, lower is better)",
           "exact_match": "exact match %, pooled (higher is better)",
           "exact_match_macro": "macro exact match % over groups (higher is better)",
           "win_rate": "win rate vs full data % (50 = even)"}
#: the baselines' lines are dashed (random grey)
BASELINE_NAMES = ("random", "longest", "cluster_random")
# line colours of the plot: tab20's dark shades, then its light ones, without its greys (random is
# grey); with the markers, 13 selectors (a bench with chains) stay apart
PALETTE = [(0.122, 0.467, 0.706), (1.0, 0.498, 0.055), (0.173, 0.627, 0.173), (0.839, 0.153, 0.157),
           (0.58, 0.404, 0.741), (0.549, 0.337, 0.294), (0.89, 0.467, 0.761), (0.737, 0.741, 0.133),
           (0.09, 0.745, 0.812), (0.682, 0.78, 0.91), (1.0, 0.733, 0.471), (0.596, 0.875, 0.541),
           (1.0, 0.596, 0.588), (0.773, 0.69, 0.835), (0.769, 0.612, 0.58), (0.969, 0.714, 0.824)]
MARKERS = "os^Dv<>PX"


def _table_order(key: tuple[str, float | None]) -> tuple[Any, ...]:
    """Sort key of a (selector, budget) row: base and full (no budget) first, then by budget,
    random first within a budget, then the selectors by name."""
    selector, budget = key
    return budget is not None, budget or 0.0, selector != "random", selector


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per (selector, budget) in first-seen order, ``full`` first: n_seeds, n_selected,
    epochs, steps and mean/std/min/max of every metric."""
    groups: dict[tuple[str, float | None], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["selector"], r["budget"]), []).append(r)
    keys = sorted(groups, key=_table_order)
    out = []
    for sel, budget in keys:
        rs = groups[(sel, budget)]
        agg: dict[str, Any] = {"selector": sel, "budget": budget, "n_seeds": len(rs),
                               "n_selected": int(np.mean([r["n_selected"] for r in rs])),
                               "n_train": int(np.mean([r.get("n_train", r["n_selected"]) for r in rs])),
                               "epochs": rs[0]["epochs"], "steps": int(np.mean([r["steps"] for r in rs]))}
        for m in METRICS:
            vals = np.array([r["metrics"][m] for r in rs if r["metrics"].get(m) is not None], dtype=float)
            if len(vals):
                agg[m] = {"mean": float(vals.mean()),
                          "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                          "min": float(vals.min()), "max": float(vals.max())}
        out.append(agg)
    return out


def _keep_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if r["budget"] is None:
            continue
        for name, values in (r.get("keep_rates") or {}).items():
            for value, c in values.items():
                out.append({"selector": r["selector"], "budget": r["budget"], "seed": r["seed"],
                            "field": name, "value": value, "n_pool": c["n"], "n_kept": c["kept"],
                            "rate": round(c["rate"], 6)})
    return out


def _csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def _fmt(agg: dict[str, Any], m: str, pct: bool = False) -> str:
    if m not in agg:
        return "–"
    v = agg[m]
    if pct:
        return f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f}"
    return f"{v['mean']:.4f} ± {v['std']:.4f}"


def _budget_label(selector: str, budget: float | None) -> str:
    if budget is not None:
        return f"{budget:g}"
    return "0 (untrained)" if selector == "base" else "1 (full)"


@dataclass
class Context:
    """What the report needs beyond the cells (``runner.bench_context``).

    groups:   the eval examples' groups, aligned with ``eval_ids`` (the eval set's order).
    grouping: how the groups were made, in words ("record field family", "rule has_code", ...).
    group_key: the record field or rule they come from (``family``), None for one group; the keep
               rates of the pool's records by it show which eval groups a selection left out.
    stages:   selector or baseline name -> the proxy-run stages its selection uses.
    records:  stage -> its cost record (``ledger.proxy_costs_from_run``); n_params: model spec -> N.
    """

    groups: list[str]
    eval_ids: list[str]
    grouping: str
    n_pool: int
    n_eval: int
    n_reference: int = 0
    stages: dict[str, list[str]] = field(default_factory=dict)
    records: dict[str, Any] = field(default_factory=dict)
    n_params: dict[str, int] = field(default_factory=dict)
    n_boot: int = 2000
    level: float = 0.95
    group_key: str | None = None


def _delta(a: dict[str, Any], ref: dict[str, Any] | None, m: str, pct: bool) -> str:
    if ref is None or a is ref or m not in a or m not in ref:
        return "–"
    d = a[m]["mean"] - ref[m]["mean"]
    return f"{100 * d:+.1f}" if pct else f"{d:+.4f}"


def _headline_note(cfg: Any, head: Any, rows: Sequence[dict[str, Any]], context: Context | None,
                   has_em: bool) -> str:
    """The paragraph above the main table: what the headline is and how to read the columns."""
    n_groups = len(set(context.groups)) if context is not None else 0
    if n_groups > 1:
        groups = f" over {n_groups} eval groups ({context.grouping}); the pooled value ignores the groups"
    elif context is not None:
        groups = f" (one eval group, {context.grouping}: the macro mean is the pooled mean over the eval set)"
    else:
        groups = ""
    what = "exact match" if head.percent else "token-weighted loss"
    em = " (exact match: the greedy answer equals the reference)" if has_em else ""
    points = " (in points)" if head.percent else ""
    n_eval = rows[0]["metrics"].get("eval_examples")
    return (f"**Headline: macro {head.label}**: the unweighted mean over groups of each group's {what}"
            f"{groups}. Held-out loss: mean response-token cross-entropy (nats) on {n_eval} eval "
            f"examples{em}; mean ± sample std over seeds {list(cfg.seeds)} (min-max in results.csv). "
            f"Δ columns: the macro headline against random at the same budget and against full "
            f"data{points}. Recipe: target.epochs={cfg.target.epochs}, match={cfg.match}. 'trained': the "
            f"selected examples that fit target.max_length (the others keep no response token and train "
            f"nothing). 'base': the target before any training; a trained row with a higher loss made the "
            f"target worse on this metric.")


def main_table(cfg: Any, aggs: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]],
               context: Context | None) -> list[str]:
    """The headline table: per (selector, budget) the macro headline metric, its pooled value, the
    deltas of the macro metric against random (same budget) and full data, the other metric and the
    win rate."""
    head = headline_of(rows)
    has_em = any("exact_match" in a for a in aggs)
    has_wr = any("win_rate" in a for a in aggs)
    others = [m for m in ("exact_match", "eval_loss") if m != head.metric and (m != "exact_match" or has_em)]
    cols = [f"**macro {head.label}**", f"{head.label} (pooled)", "Δ vs random", "Δ vs full"]
    for m in others:
        label = "exact match %" if m == "exact_match" else "held-out loss"
        cols += [f"macro {label}", f"{label} (pooled)"]
    cols += ["win rate vs full %"] if has_wr else []
    random = {a["budget"]: a for a in aggs if a["selector"] == "random"}
    full = next((a for a in aggs if a["selector"] == "full"), None)
    lines = [_headline_note(cfg, head, rows, context, has_em), "",
             "| selector | budget | examples | trained | epochs | steps | seeds | " + " | ".join(cols) + " |",
             "|---|---|---|---|---|---|---|" + "---|" * len(cols)]
    for a in aggs:
        cells = [_fmt(a, head.macro, head.percent), _fmt(a, head.metric, head.percent),
                 _delta(a, random.get(a["budget"]), head.macro, head.percent),
                 _delta(a, full, head.macro, head.percent)]
        for m in others:
            cells += [_fmt(a, f"{m}_macro", m == "exact_match"), _fmt(a, m, m == "exact_match")]
        cells += [_fmt(a, "win_rate", True)] if has_wr else []
        lead = [a["selector"], _budget_label(a["selector"], a["budget"]), a["n_selected"], a["n_train"],
                a["epochs"], a["steps"], a["n_seeds"]]
        lines.append("| " + " | ".join(str(c) for c in [*lead, *cells]) + " |")
    return lines


def verdict_table(stats: Sequence[dict[str, Any]], head: Any, level: float) -> list[str]:
    """Per (selector, budget): the paired deltas against random and against full data, wins, the
    bootstrap interval and the verdict (``analysis.comparisons``)."""
    by: dict[tuple[str, float], dict[str, dict[str, Any]]] = {}
    for c in stats:
        by.setdefault((c["selector"], c["budget"]), {})[c["baseline"]] = c
    scale, unit = (100.0, "points") if head.percent else (1.0, "nats")
    better = "higher" if head.higher_is_better else "lower"
    lines = [f"Verdicts on the macro {head.label} (selector minus baseline, paired on the same seed; "
             f"{better} is better). Interval: paired bootstrap over eval examples ({100 * level:g}%, "
             f"resampled within each group; {unit}). *beats* / *trails*: the interval excludes 0 on the "
             f"good / bad side; *ties*: it contains 0. Wins: seeds on the good side. Over seeds: "
             f"Student's t interval of the per-seed deltas ({100 * level:g}%) and its verdict; it "
             f"covers the training seed's spread, which the bootstrap does not (2+ seeds). For a tie, "
             f"the seeds that the same mean and std would need to resolve.", "",
             "| selector | budget | Δ vs random (mean ± std) | wins | interval | verdict vs random "
             "| over seeds | Δ vs full (mean ± std) | wins | interval | verdict vs full | over seeds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def num(x: float) -> str:
        # points to one decimal, as every exact-match table here; nats to 4 significant digits
        return f"{scale * x:+.1f}" if head.percent else f"{scale * x:+.4g}"

    def part(c: dict[str, Any] | None) -> str:
        if c is None:
            return "– | – | – | – | –"
        if "error" in c:
            return f"– | – | – | ({c['error']}) | –"
        seeds = ("–" if c.get("seed_verdict") is None
                 else f"[{num(c['seed_lo'])}, {num(c['seed_hi'])}] {c['seed_verdict']}")
        if c.get("seeds_needed"):
            seeds += f" (~{c['seeds_needed']} seeds to resolve)"
        return (f"{num(c['mean'])} ± {scale * c['std']:.2g} | {c['wins']} of {c['n_seeds']} | "
                f"[{num(c['lo'])}, {num(c['hi'])}] | **{c['verdict']}** | {seeds}")

    for (sel, budget), cs in sorted(by.items(), key=lambda t: _table_order(t[0])):
        lines.append(f"| {sel} | {budget:g} | {part(cs.get('random'))} | {part(cs.get('full'))} |")
    return lines


def group_tables(rows: Sequence[dict[str, Any]], head: Any) -> list[str]:
    """Per metric (the headline's first), the mean over seeds of every group's value per (selector,
    budget), and the macro mean; empty with one group."""
    per_group = [r for r in rows if r["metrics"].get("per_group")]
    names = sorted({g for r in per_group for g in r["metrics"]["per_group"]})
    if len(names) < 2:
        return []
    sizes = {n: per_group[0]["metrics"]["per_group"].get(n, {}).get("n", "?") for n in names}
    out: list[str] = []
    for m in dict.fromkeys([head.metric, "eval_loss", "exact_match"]):
        pct = m == "exact_match"
        if not any(m in v for r in per_group for v in r["metrics"]["per_group"].values()):
            continue
        label = "Exact match %" if pct else "Held-out loss (token-weighted)"
        out += ["", f"{label} per eval group (mean over seeds; n = eval examples):", "",
                "| selector | budget | " + " | ".join(f"{n} (n={sizes[n]})" for n in names) + " | macro |",
                "|---|---|" + "---|" * (len(names) + 1)]
        acc: dict[tuple[str, Any], dict[str, list[float]]] = {}
        for r in per_group:
            cell = acc.setdefault((r["selector"], r["budget"]), {})
            for n in names:
                v = r["metrics"]["per_group"].get(n, {}).get(m)
                cell.setdefault(n, []).append(math.nan if v is None else v)
        for (sel, budget), vals in sorted(acc.items(), key=lambda t: _table_order(t[0])):
            means = [float(np.mean(vals[n])) for n in names]
            shown = [("–" if math.isnan(v) else f"{100 * v:.1f}" if pct else f"{v:.4f}")
                     for v in [*means, float(np.mean(means))]]
            out.append(f"| {sel} | {_budget_label(sel, budget)} | " + " | ".join(shown) + " |")
    return out


def ledger_table(ledger: Sequence[dict[str, Any]], full_flops: float | None) -> list[str]:
    """Per selector: what its selection cost (proxy training, scoring passes, seconds) and that as a
    share of the full-data target run's training."""
    if not ledger:
        return []
    full = f"{full_flops:.3g} FLOPs" if full_flops else "not trained yet"
    lines = [f"Compute ledger (Kaplan: training 6·N·T, LoRA 4·N·T, a scoring pass 2·N·T; N and T: "
             f"docs/bench.md). Selection cost as % of the full-data target run ({full}, mean over "
             f"seeds). Each selector is charged for every proxy-run stage whose columns it reads, the "
             f"whole stage (the proxy is trained once for all selectors).", "",
             "| selector | stages | proxy training tokens | training FLOPs | scoring FLOPs | seconds "
             "| selection cost, % of full target FLOPs | seconds, % of full target seconds | not counted |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in ledger:
        share = "–" if r["share_pct"] is None else f"{r['share_pct']:.3g}"
        secs = "–" if r["seconds_share_pct"] is None else f"{r['seconds_share_pct']:.3g}"
        cells = [r["selector"], ", ".join(r["stages"]) or "none", f"{r['train_tokens']:,}",
                 f"{r['train_flops']:.3g}", f"{r['forward_flops']:.3g}", f"{r['seconds']:.1f}", share, secs,
                 "; ".join(r["unknown"]) or "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def keep_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Keep rates per (selector, budget), mean over seeds: noise, family, difficulty, then the rest."""
    keep = _keep_rows(rows)
    if not keep:
        return []
    fields: dict[str, list[str]] = {}
    for k in keep:
        values = fields.setdefault(k["field"], [])
        if k["value"] not in values:
            values.append(k["value"])
    first = ("noise", "family", "difficulty")
    order = [f for f in first if f in fields] + [f for f in fields if f not in first]
    cols = [(f, v) for f in order for v in fields[f]]
    lines = ["Keep rates (share of each group of the pool that the selection kept; mean over seeds):", "",
             "| selector | budget | " + " | ".join(f"{f}={v}" for f, v in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    table: dict[tuple[str, float], dict[tuple[str, str], list[float]]] = {}
    for k in keep:
        cell = table.setdefault((k["selector"], k["budget"]), {})
        cell.setdefault((k["field"], k["value"]), []).append(k["rate"])
    for (sel, budget), vals in sorted(table.items(), key=lambda t: _table_order(t[0])):
        cells = [f"{np.mean(vals[c]):.2f}" if c in vals else "–" for c in cols]
        lines.append(f"| {sel} | {budget:g} | " + " | ".join(cells) + " |")
    return lines


#: an eval group kept at under this share of the selection's overall keep rate is listed
UNDER_KEPT_RATIO = 0.4
#: groups of fewer pool records are not listed (their rates are a few records either way)
UNDER_KEPT_MIN_POOL = 10


def under_kept_table(rows: Sequence[dict[str, Any]], key: str, groups: Iterable[str]) -> list[str]:
    """The eval groups each (selector, budget) kept far less of than of the rest, mean over seeds.

    key: the pool records' field or rule that the eval set is grouped by (``Context.group_key``);
    groups: the eval groups (other values of ``key`` in the pool, such as garbage, are not listed).
    A group is listed when its keep rate is under ``UNDER_KEPT_RATIO`` times the selection's overall
    rate over the pool records that have ``key``, and the pool holds at least
    ``UNDER_KEPT_MIN_POOL`` of it: the first thing to look at when a selection trails in one group
    (a filter of the chain may cut it, or quotas may be meant to). [] when nothing is listed.
    """
    wanted = set(groups)
    by_cell: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for k in _keep_rows(rows):
        if k["field"] == key:
            by_cell.setdefault((k["selector"], k["budget"]), []).append(k)
    out = []
    for (sel, budget), keep in sorted(by_cell.items(), key=lambda t: _table_order(t[0])):
        totals: dict[int, list[int]] = {}  # seed -> [kept, pool] over every value of the field
        for k in keep:
            t = totals.setdefault(k["seed"], [0, 0])
            t[0], t[1] = t[0] + k["n_kept"], t[1] + k["n_pool"]
        overall = float(np.mean([kept / n for kept, n in totals.values()]))
        for value in dict.fromkeys(k["value"] for k in keep if k["value"] in wanted):
            kept = float(np.mean([k["n_kept"] for k in keep if k["value"] == value]))
            n = float(np.mean([k["n_pool"] for k in keep if k["value"] == value]))
            if n >= UNDER_KEPT_MIN_POOL and kept / n < UNDER_KEPT_RATIO * overall:
                out.append(f"| {sel} | {budget:g} | {value} | {kept:.3g} of {n:.3g} | {kept / n:.2f} "
                           f"| {overall:.2f} |")
    if not out:
        return []
    return [f"Eval groups a selection kept little of (`{key}` values kept at under {UNDER_KEPT_RATIO:g} "
            f"times the selection's overall rate; mean over seeds). Their score rests on few records of "
            f"their own; `proxysel explain` says which step of a chain dropped them:", "",
            "| selector | budget | group | kept of pool | keep rate | overall rate |",
            "|---|---|---|---|---|---|", *out]


def results_markdown(cfg: Any, aggs: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]],
                     transfer: dict[str, Any] | None, pending: int = 0, context: Context | None = None,
                     stats: Sequence[dict[str, Any]] = (), ledger: Sequence[dict[str, Any]] = ()) -> str:
    """results.md: the headline table, verdicts, per-group tables, the ledger, keep rates, win rate
    and transfer, each where there is something to show.

    ``pending`` > 0 marks a table written while the bench still runs: it then starts with a line
    saying how many cells are still to come, so a bench stopped by a time limit leaves a readable
    partial table rather than only ``cells/*/result.json``.
    """
    head = headline_of(rows)
    lines = [f"**Partial: {len(rows)} of {len(rows) + pending} cells done; the bench is still running or was "
             f"stopped (rerun the same command to resume).**", ""] if pending else []
    if context is not None:
        ref = f", reference {context.n_reference}" if context.n_reference else ", no reference set"
        lines += [f"Sets: pool {context.n_pool}{ref}, eval {context.n_eval} (disjoint; no selector reads the "
                  f"eval set).", ""]
    lines += main_table(cfg, aggs, rows, context)
    if stats:
        lines += ["", *verdict_table(stats, head, context.level if context else 0.95)]
    lines += group_tables(rows, head)
    if ledger:
        lines += ["", *ledger_table(ledger, _full_mean(rows, "train_flops"))]
    keep = keep_table(rows)
    if keep:
        lines += ["", *keep]
    if context is not None and context.group_key:
        under = under_kept_table(rows, context.group_key, context.groups)
        lines += ["", *under] if under else []
    if any("win_rate" in a for a in aggs):
        lines += ["", *_winrate_section(cfg, rows)]
    if transfer:
        lines += ["", "Transfer (proxy vs target signals on the pool, `proxysel compare`):", "",
                  "| signal | n | Spearman | Kendall | top-10% overlap | top-30% overlap |",
                  "|---|---|---|---|---|---|"]
        for s, r in transfer.items():
            ov = r["overlap"]
            lines.append(f"| {s} | {r['n']} | {r['spearman']:+.3f} | {r['kendall']:+.3f} | "
                         f"{ov.get(0.1, math.nan):.2f} | {ov.get(0.3, math.nan):.2f} |")
    return "\n".join(lines) + "\n"


def _full_mean(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    """The mean over the full-data cells of ``key`` (None when none has it)."""
    vals = [r[key] for r in rows if r["selector"] == "full" and r.get(key)]
    return float(np.mean(vals)) if vals else None


def _winrate_section(cfg: Any, rows: Sequence[dict[str, Any]]) -> list[str]:
    """The win-rate counts per (selector, budget), summed over seeds (benchmarking.winrate)."""
    wr = cfg.winrate
    judge = f"{wr.model} at {wr.endpoint}" if wr.endpoint else wr.judge
    lines = [f"Win rate against the full-data model of the same seed (judge: {judge}; the first {wr.n} "
             f"held-out prompts, answers of up to {wr.max_new_tokens} tokens, each pair judged in both "
             f"orders; 50% = as good as full data). Counts are summed over seeds; winning score = "
             f"(wins - losses) / n + 1 (Li et al. 2023); 'picked A' shows the judge's position bias.", "",
             "| selector | budget | win rate % | wins | ties | losses | winning score | picked A % "
             "| no verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("winrate"):
            groups.setdefault((r["selector"], r["budget"]), []).append(r["winrate"])
    for (sel, budget), ss in sorted(groups.items(), key=lambda t: _table_order(t[0])):
        n = sum(s["n"] for s in ss)
        w, t, l_ = (sum(s[k] for s in ss) for k in ("wins", "ties", "losses"))
        lines.append(f"| {sel} | {budget:g} | {100 * np.mean([s['win_rate'] for s in ss]):.1f} | "
                     f"{w} | {t} | {l_} | "
                     f"{(w - l_) / n + 1:.3f} | {100 * np.mean([s['picked_a'] for s in ss]):.0f} | "
                     f"{sum(s['invalid'] for s in ss)} |")
    return lines


def plot(aggs: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Metric against budget, one line per selector (error bars: min-max over seeds), full as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [next(m for m in pair if any(m in a for a in aggs)) for pair in PLOT_METRICS
               if any(m in a for m in pair for a in aggs)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.2 * len(metrics), 4.4), squeeze=False)
    budgets = sorted({a["budget"] for a in aggs if a["budget"] is not None})
    selectors = list(dict.fromkeys(a["selector"] for a in aggs if a["budget"] is not None))
    full = next((a for a in aggs if a["selector"] == "full"), None)
    base = next((a for a in aggs if a["selector"] == "base"), None)
    for ax, m in zip(axes[0], metrics):
        scale = 100.0 if m in PERCENT else 1.0
        for k, sel in enumerate(selectors):
            pts = sorted((a["budget"], a[m]) for a in aggs if a["selector"] == sel and m in a)
            if not pts:
                continue
            # de-overlap bars
            x = np.array([p[0] for p in pts]) * (1 + 0.015 * (k - (len(selectors) - 1) / 2))
            mean = np.array([p[1]["mean"] for p in pts]) * scale
            lo = mean - np.array([p[1]["min"] for p in pts]) * scale
            hi = np.array([p[1]["max"] for p in pts]) * scale - mean
            j = [s for s in selectors if s != "random"].index(sel) if sel != "random" else 0
            style = {"linestyle": "--", "color": "grey", "marker": "o"} if sel == "random" else \
                {"color": PALETTE[j % len(PALETTE)], "marker": MARKERS[j % len(MARKERS)],
                 "linestyle": "--" if sel in BASELINE_NAMES else "-"}
            ax.errorbar(x, mean, yerr=[lo, hi], capsize=3, label=sel, **style)
        if full is not None and m in full:
            f = full[m]
            ax.axhline(f["mean"] * scale, color="black", linewidth=1, label="full data")
            ax.axhspan(f["min"] * scale, f["max"] * scale, color="black", alpha=0.08)
        if base is not None and m in base:
            _base_line(ax, base[m]["mean"] * scale,
                       [a[m]["mean"] * scale for a in aggs if m in a and a is not base])
        if m.startswith("exact_match"):
            top = max([a[m]["max"] for a in aggs if m in a] + [0.0]) * scale
            ax.set_ylim(0, max(5.0, 1.1 * top))
        if m == "win_rate":  # full data against itself is even by definition
            ax.axhline(50, color="black", linewidth=1, label="full data (even)")
            ax.set_ylim(0, 100)
        if budgets and budgets[-1] / budgets[0] >= 8:
            ax.set_xscale("log")
        if len(budgets) == 1:  # else the de-overlapped points spread over the whole axis like budgets
            ax.set_xlim(budgets[0] * 0.85, budgets[0] * 1.15)
        ax.set_xticks(budgets)
        ax.set_xticklabels([f"{b:g}" for b in budgets])
        ax.set_xlabel("budget (fraction of the pool)")
        ax.set_ylabel(YLABELS[m])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: mean over seeds, bars = min-max", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".tmp-{path.name}")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def _base_line(ax: Any, value: float, others: Sequence[float]) -> None:
    """The untrained target as a dotted line, or as a note when drawing it would squash the lines
    that matter (a from-scratch target starts near log(vocabulary) nats, far above every trained one)."""
    lo, hi = (min(others), max(others)) if others else (value, value)
    span = max(hi - lo, 0.1 * abs(hi), 1e-9)
    if lo - span <= value <= hi + span:
        ax.axhline(value, color="black", linestyle=":", linewidth=1, label="target before training")
    else:
        ax.annotate(f"target before training: {value:.3g} (off the scale)", xy=(0.02, 0.98),
                    xycoords="axes fraction", va="top", fontsize=8)


def bench_stats(rows: Sequence[dict[str, Any]], context: Context | None) -> dict[str, Any]:
    """stats.json: the headline and every paired comparison of the headline metric (and, when the
    headline is exact match, of the loss too); empty without a context (no eval groups known)."""
    if context is None:
        return {}
    head = headline_of(rows)
    out: dict[str, Any] = {"headline": {"metric": head.macro, "higher_is_better": head.higher_is_better},
                           "grouping": context.grouping,
                           "groups": {g: context.groups.count(g) for g in sorted(set(context.groups))},
                           "n_boot": context.n_boot, "level": context.level, "comparisons": {}}
    for metric in dict.fromkeys([head.metric, "eval_loss"]):
        out["comparisons"][metric] = comparisons(rows, context.groups, context.eval_ids, metric=metric,
                                                 n_boot=context.n_boot, level=context.level)
    return out


def write_outputs(cfg: Any, out: Path, rows: Sequence[dict[str, Any]], transfer: dict[str, Any] | None,
                  pool: Any, pending: int = 0, context: Context | None = None) -> dict[str, Path]:
    """Write results.csv, keep_rates.csv, results.md, stats.json, ledger.json, winrate.json, transfer.json and
    plot.png; with ``pending`` > 0 (cells still to train) only the two tables and results.md, marked partial
    (the plot is drawn once, at the end). ``context`` (eval groups, ledger inputs) adds the verdicts and
    the ledger."""
    flat = []
    for r in rows:
        m = r["metrics"]
        flat.append({"selector": r["selector"], "budget": "" if r["budget"] is None else r["budget"],
                     "seed": r["seed"], "n_selected": r["n_selected"], "n_train": r["n_train"],
                     "epochs": r["epochs"], "steps": r["steps"], "eval_loss": m.get("eval_loss"),
                     "eval_loss_example": m.get("eval_loss_example"), "exact_match": m.get("exact_match", ""),
                     "win_rate": m.get("win_rate", ""),
                     "train_seconds": r["train_seconds"], "eval_seconds": m.get("eval_seconds"),
                     "eval_loss_macro": m.get("eval_loss_macro", ""),
                     "exact_match_macro": m.get("exact_match_macro", ""),
                     "tokens_trained": r.get("tokens_trained", ""), "train_flops": r.get("train_flops", "")})
    # the first 13 columns are those of benches before the macro metrics, in the same order
    columns = ["selector", "budget", "seed", "n_selected", "n_train", "epochs", "steps", "eval_loss",
               "eval_loss_example", "exact_match", "win_rate", "train_seconds", "eval_seconds",
               "eval_loss_macro", "exact_match_macro", "tokens_trained", "train_flops"]
    paths = {"results.csv": atomic_write_text(out / "results.csv", _csv(flat, columns))}
    keep = _keep_rows(rows)
    if keep:
        paths["keep_rates.csv"] = atomic_write_text(
            out / "keep_rates.csv",
            _csv(keep, ["selector", "budget", "seed", "field", "value", "n_pool", "n_kept", "rate"]))
    aggs = aggregate(rows)
    stats = bench_stats(rows, context)
    full_flops, full_seconds = _full_mean(rows, "train_flops"), _full_mean(rows, "train_seconds")
    ledger = [] if context is None else ledger_rows(context.stages, context.records, context.n_params,
                                                     full_flops, full_seconds)
    head = stats.get("comparisons", {}).get(headline_of(rows).metric, [])
    paths["results.md"] = atomic_write_text(out / "results.md", results_markdown(
        cfg, aggs, rows, transfer, pending, context=context, stats=head, ledger=ledger))
    if pending:
        return paths
    if stats:
        paths["stats.json"] = atomic_write_json(out / "stats.json", stats)
    if ledger:
        paths["ledger.json"] = atomic_write_json(out / "ledger.json", {
            "full_target_train_flops": full_flops, "full_target_train_seconds": full_seconds,
            "selectors": ledger, "stages": context.records, "n_params": context.n_params})
    judged = {r["cell"]: r["winrate"] for r in rows if r.get("winrate")}
    if judged:
        paths["winrate.json"] = atomic_write_json(out / "winrate.json", judged)
    if transfer is not None:
        paths["transfer.json"] = atomic_write_json(out / "transfer.json", transfer)
    paths["plot.png"] = plot(aggs, out / "plot.png", f"proxysel bench {Path(cfg.out).name}")
    return paths
