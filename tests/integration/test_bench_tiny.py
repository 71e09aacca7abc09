"""`proxysel bench --preset tiny` end to end: table, plot, keep rates, transfer, resume, sanity."""

from __future__ import annotations

import csv
import json
import time

import pytest

pytest.importorskip("torch")

from proxysel.benchmarking.config import load_bench_config  # noqa: E402
from proxysel.benchmarking.runner import plan_cells  # noqa: E402
from proxysel.cli.main import main  # noqa: E402


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny"
    t0 = time.process_time()  # CPU seconds: on a shared CI machine wall time measures the neighbours
    assert main(["-q", "bench", "--preset", "tiny", "--out", str(out)]) == 0
    return out, time.process_time() - t0


def _rows(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_runs_end_to_end_quickly(bench):
    out, seconds = bench
    assert seconds < 60
    for name in ("results.csv", "results.md", "keep_rates.csv", "plot.png", "transfer.json", "config.yaml"):
        assert (out / name).is_file(), name
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    transfer = json.loads((out / "transfer.json").read_text())
    assert -1 <= transfer["lp_app"]["spearman"] <= 1 and transfer["lp_app"]["n"] == 120


def test_every_cell_has_a_row_and_the_table_aggregates_seeds(bench):
    out, _ = bench
    cfg = load_bench_config(preset="tiny")
    rows = _rows(out)
    assert sorted((r["selector"], r["budget"], r["seed"]) for r in rows) == sorted(
        (c.selector, "" if c.budget is None else str(c.budget), str(c.seed)) for c in plan_cells(cfg))
    md = (out / "results.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| ") and " ± " in ln and "loss" not in ln]
    keys = {tuple(c.strip() for c in ln.split("|")[1:3]) for ln in table}
    expected = {("full", "1 (full)")} | {(s, f"{b:g}") for b in cfg.budgets
                                         for s in ["random", *[x.name for x in cfg.selectors]]}
    assert expected <= keys
    header = next(ln for ln in md.splitlines() if ln.startswith("| selector | budget | examples"))
    col = [c.strip() for c in header.split("|")].index("seeds")
    assert table[0].startswith("| base | 0 (untrained) |")
    seeds = {ln.split("|")[col].strip() for ln in table[1:len(expected) + 1]}
    assert seeds == {str(len(cfg.seeds))}
    # every tiny example fits max_length: 'trained' equals 'examples' on every row
    ex, tr = (([c.strip() for c in header.split("|")]).index(k) for k in ("examples", "trained"))
    assert all(ln.split("|")[ex].strip() == ln.split("|")[tr].strip() for ln in table)


def test_full_pool_beats_a_one_percent_random_subset(bench):
    """The sanity check: it fails if the target does not learn from its data."""
    out, _ = bench
    rows = _rows(out)
    full = [float(r["eval_loss"]) for r in rows if r["selector"] == "full"]
    tiny = [float(r["eval_loss"]) for r in rows if r["selector"] == "random" and r["budget"] == "0.01"]
    assert len(full) == len(tiny) == 2
    assert max(full) < min(tiny) - 0.5, (full, tiny)


def test_base_row_is_the_untrained_targets_loss_by_a_plain_loop(bench):
    """The 'base' row must be the held-out loss of the target before any training: recomputed here
    with a plain model(labels=...) at batch size 1, token-weighted over the response tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from conftest import plain_loss
    from proxysel.data import read_pool
    from proxysel.models.render import Renderer

    out, _ = bench
    rows = _rows(out)
    base = [r for r in rows if r["selector"] == "base"]
    assert len(base) == 1 and base[0]["steps"] == "0"
    model = AutoModelForCausalLM.from_pretrained(out / "models" / "target").eval()
    renderer = Renderer(AutoTokenizer.from_pretrained(out / "models" / "target"), max_length=64, template="auto")
    total, n = 0.0, 0
    for e in read_pool(out / "data" / "eval.jsonl").examples:
        enc = renderer.encode(e)
        total, n = total + plain_loss(model, enc) * enc.n_response_tokens, n + enc.n_response_tokens
    assert float(base[0]["eval_loss"]) == pytest.approx(total / n, abs=1e-4)
    full = [float(r["eval_loss"]) for r in rows if r["selector"] == "full"]
    assert max(full) < total / n - 1.0  # training on the pool helps the tiny target a lot


def test_keep_rates_cover_every_noise_type(bench):
    out, _ = bench
    with open(out / "keep_rates.csv", newline="") as f:
        keep = list(csv.DictReader(f))
    noise = {r["value"] for r in keep if r["field"] == "noise"}
    assert noise == {"clean", "wrong", "garbage", "duplicate"}
    r = next(r for r in keep if r["selector"] == "random" and r["budget"] == "0.3" and r["value"] == "clean")
    assert int(r["n_pool"]) == 96 and 0 <= float(r["rate"]) <= 1


def test_rerun_reads_every_cell_from_the_cache(bench, capsys):
    out, _ = bench
    before = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/result.json")}
    assert main(["bench", "--preset", "tiny", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count(": cached") == len(before) and "training on" not in text
    assert before == {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/result.json")}


def test_changed_recipe_is_refused_without_overwrite(bench, capsys):
    out, _ = bench
    assert main(["-q", "bench", "--preset", "tiny", "--out", str(out), "target.lr=0.02"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_match_steps_gives_subsets_the_full_runs_steps(tmp_path):
    out = tmp_path / "steps"
    assert main(["-q", "bench", "--preset", "tiny", "--out", str(out), "--match", "steps", "seeds=[0]",
                 "budgets=[0.3]", "selectors=[]", "transfer.enabled=false"]) == 0
    rows = {r["selector"]: r for r in _rows(out)}
    assert int(rows["random"]["epochs"]) > int(rows["full"]["epochs"])
    assert abs(int(rows["random"]["steps"]) - int(rows["full"]["steps"])) <= 3


def test_variants_add_cells_and_reuse_the_cached_ones(bench, capsys):
    """Runs last: it rewrites the folder's tables for a smaller plan."""
    import pyarrow.parquet as pq

    out, _ = bench
    assert main(["bench", "--preset", "tiny", "--out", str(out), "seeds=[0]", "budgets=[0.3]",
                 "selectors=[{method: top, name: middle, signal: ppl_2, order: middle}, "
                 "{method: top, name: lp_app-i2, signal: lp_app_2, order: low}]"]) == 0
    text = capsys.readouterr().out
    assert text.count("training on") == 2 and "base: cached" in text and "full-s0: cached" in text
    assert "random-0.3-s0: cached" in text
    cols = pq.read_table(out / "proxy" / "scores.parquet").column_names
    assert {"ppl_0", "ppl_2", "lp_1", "lp_app_2"} <= set(cols)
    assert {r["selector"] for r in _rows(out)} == {"base", "full", "random", "middle", "lp_app-i2"}


def test_a_stopped_bench_leaves_a_partial_table_and_resumes(tmp_path, monkeypatch):
    """A time limit that stops the bench mid-plan must leave results.md/.csv for the cells done."""
    import proxysel.benchmarking.runner as runner

    out = tmp_path / "stopped"
    args = ["-q", "bench", "--preset", "tiny", "--out", str(out), "seeds=[0]", "transfer.enabled=false"]
    n_cells = len(plan_cells(load_bench_config(preset="tiny", overrides=["seeds=[0]"])))
    real, calls = runner.run_cell, []

    def stop_at_the_fourth(*a, **kw):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # what a time limit's SIGINT raises
        return real(*a, **kw)

    monkeypatch.setattr(runner, "run_cell", stop_at_the_fourth)
    assert main(args) == 130  # the CLI reports an interrupt with exit code 130
    md = (out / "results.md").read_text()
    assert md.startswith(f"**Partial: 3 of {n_cells} cells done")
    assert len(_rows(out)) == 3 and not (out / "plot.png").exists()

    monkeypatch.setattr(runner, "run_cell", real)
    assert main(args) == 0
    assert "Partial" not in (out / "results.md").read_text()
    assert len(_rows(out)) == n_cells and (out / "plot.png").is_file()
