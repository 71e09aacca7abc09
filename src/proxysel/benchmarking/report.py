"""results.csv, keep_rates.csv, results.md and plot.png from the cell results of a bench.

Aggregation: for every (selector, budget), and for ``full``, the mean, the sample standard
deviation (ddof=1; 0 with one seed) and the min and max over seeds of each metric.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from proxysel.store.atomic import atomic_write_json, atomic_write_text

METRICS = ("eval_loss", "exact_match", "win_rate")
PERCENT = ("exact_match", "win_rate")  # shown in %
YLABELS = {"eval_loss": "held-out loss (nats, lower is better)", "exact_match": "exact match % (higher is better)",
           "win_rate": "win rate vs full data % (50 = even)"}


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
                agg[m] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                          "min": float(vals.min()), "max": float(vals.max())}
        out.append(agg)
    return out


def _keep_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if r["budget"] is None:
            continue
        for field, values in (r.get("keep_rates") or {}).items():
            for value, c in values.items():
                out.append({"selector": r["selector"], "budget": r["budget"], "seed": r["seed"], "field": field,
                            "value": value, "n_pool": c["n"], "n_kept": c["kept"], "rate": round(c["rate"], 6)})
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


def results_markdown(cfg: Any, aggs: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]],
                     transfer: dict[str, Any] | None, pending: int = 0) -> str:
    """The results table (plus keep rates, per-family accuracy and transfer where present).

    ``pending`` > 0 marks a table written while the bench still runs: it then starts with a line
    saying how many cells are still to come, so a bench stopped by a time limit leaves a readable
    partial table rather than only ``cells/*/result.json``.
    """
    has_em = any("exact_match" in a for a in aggs)
    has_wr = any("win_rate" in a for a in aggs)
    random_loss = {a["budget"]: a["eval_loss"]["mean"] for a in aggs if a["selector"] == "random"}
    full = next((a for a in aggs if a["selector"] == "full"), None)
    lines = [f"**Partial: {len(rows)} of {len(rows) + pending} cells done; the bench is still running or was "
             f"stopped (rerun the same command to resume).**", ""] if pending else []
    lines += [f"Held-out loss: mean response-token cross-entropy (nats) on {rows[0]['metrics']['eval_examples']} "
             f"held-out examples; mean ± sample std over seeds {list(cfg.seeds)} (min-max in results.csv). "
             f"Recipe: target.epochs={cfg.target.epochs}, match={cfg.match}. 'trained': the selected examples "
             f"that fit target.max_length (the others keep no response token and train nothing). 'base': "
             f"the target before any training; a trained row with a higher loss made the target worse on this metric.", "",
             "| selector | budget | examples | trained | epochs | steps | seeds | held-out loss | Δ vs random "
             "| Δ vs full |" + (" exact match % |" if has_em else "") + (" win rate vs full % |" if has_wr else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if has_em else "") + ("---|" if has_wr else "")]
    for a in aggs:
        loss = a["eval_loss"]["mean"]
        d_rand = f"{loss - random_loss[a['budget']]:+.4f}" if a["budget"] in random_loss else "–"
        d_full = f"{loss - full['eval_loss']['mean']:+.4f}" if full is not None and a is not full else "–"
        budget = _budget_label(a["selector"], a["budget"])
        lines.append(f"| {a['selector']} | {budget} | {a['n_selected']} | {a['n_train']} | {a['epochs']} | {a['steps']} | "
                     f"{a['n_seeds']} | {_fmt(a, 'eval_loss')} | {d_rand} | {d_full} |"
                     + (f" {_fmt(a, 'exact_match', True)} |" if has_em else "")
                     + (f" {_fmt(a, 'win_rate', True)} |" if has_wr else ""))
    keep = _keep_rows(rows)
    if keep:
        fields = {}
        for k in keep:
            fields.setdefault(k["field"], [])
            if k["value"] not in fields[k["field"]]:
                fields[k["field"]].append(k["value"])
        cols = [(f, v) for f in ("noise", "family", "difficulty") for v in fields.get(f, [])]
        lines += ["", "Keep rates (share of each group of the pool that the selection kept; mean over seeds):", "",
                  "| selector | budget | " + " | ".join(f"{f}={v}" for f, v in cols) + " |",
                  "|---|---|" + "---|" * len(cols)]
        table: dict[tuple[str, float], dict[tuple[str, str], list[float]]] = {}
        for k in keep:
            table.setdefault((k["selector"], k["budget"]), {}).setdefault((k["field"], k["value"]), []) \
                .append(k["rate"])
        for (sel, budget), vals in sorted(table.items(), key=lambda t: _table_order(t[0])):
            cells = [f"{np.mean(vals[c]):.2f}" if c in vals else "–" for c in cols]
            lines.append(f"| {sel} | {budget:g} | " + " | ".join(cells) + " |")
    per_group = [r for r in rows if r["metrics"].get("per_group")]
    if per_group and has_em:
        names = sorted(per_group[0]["metrics"]["per_group"])
        lines += ["", "Exact match % per held-out family (mean over seeds):", "",
                  "| selector | budget | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        acc: dict[tuple[str, Any], dict[str, list[float]]] = {}
        for r in per_group:
            for n in names:
                acc.setdefault((r["selector"], r["budget"]), {}).setdefault(n, []).append(
                    r["metrics"]["per_group"][n].get("exact_match", math.nan))
        for (sel, budget), vals in sorted(acc.items(), key=lambda t: _table_order(t[0])):
            b = _budget_label(sel, budget)
            lines.append(f"| {sel} | {b} | " + " | ".join(f"{100 * np.mean(vals[n]):.1f}" for n in names) + " |")
    if has_wr:
        lines += ["", *_winrate_section(cfg, rows)]
    if transfer:
        lines += ["", "Transfer (proxy vs target signals on the pool, `proxysel compare`):", "",
                  "| signal | n | Spearman | Kendall | top-10% overlap | top-30% overlap |", "|---|---|---|---|---|---|"]
        for s, r in transfer.items():
            ov = r["overlap"]
            lines.append(f"| {s} | {r['n']} | {r['spearman']:+.3f} | {r['kendall']:+.3f} | "
                         f"{ov.get(0.1, math.nan):.2f} | {ov.get(0.3, math.nan):.2f} |")
    return "\n".join(lines) + "\n"


def _winrate_section(cfg: Any, rows: Sequence[dict[str, Any]]) -> list[str]:
    """The win-rate counts per (selector, budget), summed over seeds (benchmarking.winrate)."""
    wr = cfg.winrate
    judge = f"{wr.model} at {wr.endpoint}" if wr.endpoint else wr.judge
    lines = [f"Win rate against the full-data model of the same seed (judge: {judge}; the first {wr.n} held-out "
             f"prompts, answers of up to {wr.max_new_tokens} tokens, each pair judged in both orders; 50% = as "
             f"good as full data). Counts are summed over seeds; winning score = (wins - losses) / n + 1 "
             f"(Li et al. 2023); 'picked A' shows the judge's position bias.", "",
             "| selector | budget | win rate % | wins | ties | losses | winning score | picked A % | no verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("winrate"):
            groups.setdefault((r["selector"], r["budget"]), []).append(r["winrate"])
    for (sel, budget), ss in sorted(groups.items(), key=lambda t: _table_order(t[0])):
        n = sum(s["n"] for s in ss)
        w, t, l_ = (sum(s[k] for s in ss) for k in ("wins", "ties", "losses"))
        lines.append(f"| {sel} | {budget:g} | {100 * np.mean([s['win_rate'] for s in ss]):.1f} | {w} | {t} | {l_} | "
                     f"{(w - l_) / n + 1:.3f} | {100 * np.mean([s['picked_a'] for s in ss]):.0f} | "
                     f"{sum(s['invalid'] for s in ss)} |")
    return lines


def plot(aggs: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Metric against budget, one line per selector (error bars: min-max over seeds), full as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if any(m in a for a in aggs)]
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
            x = np.array([p[0] for p in pts]) * (1 + 0.015 * (k - (len(selectors) - 1) / 2))  # de-overlap bars
            mean = np.array([p[1]["mean"] for p in pts]) * scale
            lo = mean - np.array([p[1]["min"] for p in pts]) * scale
            hi = np.array([p[1]["max"] for p in pts]) * scale - mean
            style = {"linestyle": "--", "color": "grey"} if sel == "random" else {}
            ax.errorbar(x, mean, yerr=[lo, hi], marker="o", capsize=3, label=sel, **style)
        if full is not None and m in full:
            f = full[m]
            ax.axhline(f["mean"] * scale, color="black", linewidth=1, label="full data")
            ax.axhspan(f["min"] * scale, f["max"] * scale, color="black", alpha=0.08)
        if base is not None and m in base:
            _base_line(ax, base[m]["mean"] * scale, [a[m]["mean"] * scale for a in aggs if m in a and a is not base])
        if m == "exact_match":
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


def write_outputs(cfg: Any, out: Path, rows: Sequence[dict[str, Any]], transfer: dict[str, Any] | None,
                  pool: Any, pending: int = 0) -> dict[str, Path]:
    """Write results.csv, keep_rates.csv, results.md, winrate.json, transfer.json and plot.png; with ``pending`` > 0
    (cells still to train) only the two tables and results.md, marked partial (the plot is drawn once, at
    the end)."""
    flat = []
    for r in rows:
        m = r["metrics"]
        flat.append({"selector": r["selector"], "budget": "" if r["budget"] is None else r["budget"],
                     "seed": r["seed"], "n_selected": r["n_selected"], "n_train": r["n_train"],
                     "epochs": r["epochs"], "steps": r["steps"], "eval_loss": m.get("eval_loss"),
                     "eval_loss_example": m.get("eval_loss_example"), "exact_match": m.get("exact_match", ""),
                     "win_rate": m.get("win_rate", ""),
                     "train_seconds": r["train_seconds"], "eval_seconds": m.get("eval_seconds")})
    columns = ["selector", "budget", "seed", "n_selected", "n_train", "epochs", "steps", "eval_loss",
               "eval_loss_example", "exact_match", "win_rate", "train_seconds", "eval_seconds"]
    paths = {"results.csv": atomic_write_text(out / "results.csv", _csv(flat, columns))}
    keep = _keep_rows(rows)
    if keep:
        paths["keep_rates.csv"] = atomic_write_text(
            out / "keep_rates.csv", _csv(keep, ["selector", "budget", "seed", "field", "value", "n_pool", "n_kept", "rate"]))
    aggs = aggregate(rows)
    paths["results.md"] = atomic_write_text(out / "results.md", results_markdown(cfg, aggs, rows, transfer, pending))
    if pending:
        return paths
    judged = {r["cell"]: r["winrate"] for r in rows if r.get("winrate")}
    if judged:
        paths["winrate.json"] = atomic_write_json(out / "winrate.json", judged)
    if transfer is not None:
        paths["transfer.json"] = atomic_write_json(out / "transfer.json", transfer)
    paths["plot.png"] = plot(aggs, out / "plot.png", f"proxysel bench {Path(cfg.out).name}")
    return paths
