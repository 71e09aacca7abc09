"""Aggregation over seeds, the markdown table, the plot, and compute matching."""

from __future__ import annotations

import numpy as np

from proxysel.benchmarking.config import load_bench_config
from proxysel.benchmarking.report import aggregate, results_markdown, write_outputs
from proxysel.benchmarking.runner import plan_cells
from proxysel.benchmarking.target import matched_epochs, steps_for


def _row(selector, budget, seed, loss, em=None):
    metrics = {"eval_loss": loss, "eval_loss_macro": loss, "eval_examples": 10}
    if em is not None:
        metrics["exact_match"] = metrics["exact_match_macro"] = em
    return {"selector": selector, "budget": budget, "seed": seed, "n_selected": 10, "n_train": 10,
            "epochs": 3, "steps": 3, "train_seconds": 1.0, "metrics": metrics,
            "keep_rates": {"noise": {"clean": {"n": 8, "kept": 2, "rate": 0.25}}} if budget else {}}


def test_plan_has_every_cell_once():
    cfg = load_bench_config(preset="tiny", overrides=["seeds=[0,1,2]"])
    cells = plan_cells(cfg)
    names = [c.name for c in cells]
    per_budget_seed = len(cfg.baselines) + len(cfg.selectors)
    assert cfg.baselines == ("random", "longest", "cluster_random")
    assert len(names) == len(set(names)) == 1 + 3 + len(cfg.budgets) * 3 * per_budget_seed
    assert names[:4] == ["base", "full-s0", "full-s1", "full-s2"]
    assert names[4:7] == ["random-0.01-s0", "longest-0.01-s0", "cluster_random-0.01-s0"]


def test_aggregate_mean_and_sample_std_per_selector_and_budget():
    rows = [_row("full", None, s, 1.0 + s) for s in (0, 1, 2)]
    rows += [_row(sel, b, s, 2.0 + s + b, em=0.5)
             for b in (0.1, 0.3) for s in (0, 1, 2) for sel in ("random", "s2l")]
    rows.append(_row("base", None, 0, 5.0))
    aggs = aggregate(rows)
    assert [(a["selector"], a["budget"]) for a in aggs] == [
        ("base", None), ("full", None), ("random", 0.1), ("s2l", 0.1), ("random", 0.3), ("s2l", 0.3)]
    assert aggs[0]["n_seeds"] == 1 and aggs[0]["eval_loss"]["mean"] == 5.0
    aggs = aggs[1:]
    full = aggs[0]["eval_loss"]
    assert full["mean"] == 2.0 and np.isclose(full["std"], 1.0) and (full["min"], full["max"]) == (1.0, 3.0)
    assert "exact_match" not in aggs[0] and aggs[1]["exact_match"]["mean"] == 0.5
    cfg = load_bench_config(preset="tiny")
    loss_rows = [{**r, "metrics": {k: v for k, v in r["metrics"].items() if not k.startswith("exact")}}
                 for r in rows]
    md = results_markdown(cfg, aggregate(loss_rows), loss_rows, None)
    assert "**Headline: macro held-out loss**" in md
    # macro | pooled | delta of the macro vs random | vs full
    assert "| base | 0 (untrained) | " in md and "| 5.0000 ± 0.0000 | 5.0000 ± 0.0000 | – | +3.0000 |" in md
    assert "| s2l | 0.3 | 10 | 10 | 3 | 3 | 3 | 3.3000 ± 1.0000 | 3.3000 ± 1.0000 | +0.0000 | +1.3000 |" in md
    assert "| full | 1 (full) |" in md and "| random | 0.1 |" in md
    assert "2.0000 ± 1.0000" in md and "noise=clean" in md
    md = results_markdown(cfg, aggregate(rows), rows, None)  # exact match measured: it is the headline
    assert "**Headline: macro exact match %**" in md
    assert "| s2l | 0.3 | 10 | 10 | 3 | 3 | 3 | 50.0 ± 0.0 |" in md


def test_write_outputs_writes_every_file(tmp_path):
    cfg = load_bench_config(preset="tiny", fields={"out": str(tmp_path)})
    rows = [_row("full", None, 0, 1.0, 0.9)] + [_row("random", 0.1, 0, 2.0, 0.1),
                                                _row("lp_app", 0.1, 0, 1.5, 0.2)]
    paths = write_outputs(cfg, tmp_path, rows, None, None)
    assert set(paths) == {"results.csv", "keep_rates.csv", "results.md", "plot.png"}
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert lines[0].startswith("selector,budget,seed") and len(lines) == 4


def test_matched_epochs_give_about_the_full_runs_steps():
    full = steps_for(1200, 16, 3)
    for n in (12, 120, 360, 600):
        e = matched_epochs(n, 1200, 16, 3)
        assert abs(steps_for(n, 16, e) - full) <= -(-n // 16) / 2 + 1
    assert matched_epochs(1200, 1200, 16, 3) == 3
