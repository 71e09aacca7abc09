"""The bench's evaluation: three disjoint sets (leakage, reference checks), eval groups, group and
macro metrics through the bench's own aggregation, paired comparisons, and the compute ledger
table, each on a hand-worked case."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from proxysel.benchmarking.analysis import (
    ExampleArrays,
    choice_stages,
    comparisons,
    example_arrays,
    example_metrics,
    example_record,
    ledger_rows,
)
from proxysel.benchmarking.config import load_bench_config
from proxysel.benchmarking.datasets import check_leakage, sharegpt_sets, synthetic_sets
from proxysel.benchmarking.groups import eval_groups, find_leaks, group_key, has_code
from proxysel.benchmarking.report import (
    Context,
    aggregate,
    results_markdown,
    under_kept_table,
    verdict_table,
    write_outputs,
)
from proxysel.benchmarking.synthetic import make_pool, make_test_set
from proxysel.cli.main import main
from proxysel.config import ConfigError
from proxysel.data import read_pool
from proxysel.errors import UsageError
from proxysel.selectors.config import SelectorChoice


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _qa(i, q, a, **extra):
    return {"id": i, "instruction": q, "output": a, **extra}


# ----------------------------------------------------------------------------------- leakage


def test_leaks_match_after_case_and_whitespace_normalisation(tmp_path):
    pool = read_pool(_write(tmp_path / "pool.jsonl", [
        _qa("p1", "Add: 2+2", "4"), _qa("p2", "Copy: a b", "a b"),
        _qa("p3", "What is  the Capital?", "Paris")]))
    held_out = read_pool(_write(tmp_path / "eval.jsonl", [
        _qa("e1", "what is the capital?", "  paris\n"),  # = p3 after normalisation
        _qa("e2", "Add: 2+3", "5"),                       # differs by one character: no leak
        _qa("e3", "COPY:   A B", "A B")]))                # = p2
    ref = read_pool(_write(tmp_path / "ref.jsonl", [_qa("r1", "Add: 2+3", "5")]))  # = e2
    assert find_leaks(held_out.examples, pool.examples) == [("e1", "p3"), ("e3", "p2")]
    with pytest.raises(ConfigError) as e:
        check_leakage(pool, held_out, ref)
    assert e.value.field == "data.eval"
    assert "3 eval records" in str(e.value) and "e1 = p3, e2 = r1, e3 = p2" in str(e.value)
    clean = read_pool(_write(tmp_path / "ok.jsonl", [_qa("e2", "Add: 2+3", "5")]))
    check_leakage(pool, clean)  # without the reference set, e2 leaks nothing


def test_a_leaking_files_bench_exits_2_before_any_work(tmp_path, capsys):
    pool = [_qa(f"p{i}", f"Copy: {i}", str(i)) for i in range(8)]
    held_out = [_qa("e0", "copy:  3", "3"), _qa("e1", "Copy: 30", "30"), _qa("e2", "COPY: 5", "5")]
    cfg = tmp_path / "b.yaml"
    cfg.write_text(f"data: {{kind: files, pool: {_write(tmp_path / 'pool.jsonl', pool)}, "
                   f"eval: {_write(tmp_path / 'eval.jsonl', held_out)}}}\nselectors: []\n")
    out = tmp_path / "out"
    assert main(["-q", "bench", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "config field 'data.eval'" in err and "2 eval records" in err and "e0 = p3, e2 = p5" in err
    assert not (out / "proxy").exists() and not (out / "cells").exists()


# ------------------------------------------------------------------------- the reference set


@pytest.mark.parametrize("yaml_text, words", [
    # rds declares needs_reference; color's selector does not, but the signal it reads does
    ("selectors: [{method: rds}]",
     "selector rds (rds) selects against a reference set; give data.n_reference > 0"),
    ("selectors: [{method: color, name: cf}]", "selector cf (color)"),
    ("data: {kind: files, pool: p.jsonl, eval: e.jsonl}\nselectors: [{method: color}]",
     "give data.reference (a path)"),
])
def test_a_selector_that_needs_a_reference_set_is_refused_naming_the_field(tmp_path, yaml_text, words):
    path = tmp_path / "b.yaml"
    path.write_text(yaml_text + "\n")
    with pytest.raises(ConfigError) as e:
        load_bench_config(path)
    assert e.value.field == "data.reference" and words in str(e.value)


def test_cli_without_a_needed_reference_set_exits_2(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["-q", "bench", "--preset", "tiny", "--out", str(out), "data.n_reference=0"]) == 2
    err = capsys.readouterr().err
    assert "config field 'data.reference'" in err and "rds" in err
    assert not out.exists()  # refused when the config is read, before any work


def test_baselines_and_cluster_random_options():
    cfg = load_bench_config(preset="synthetic")
    assert [(c.name, c.options) for c in cfg.baseline_choices()] == [
        ("random", {}), ("longest", {}), ("cluster_random", {"clusters": 20})]  # lp_app's clusters
    tiny = load_bench_config(preset="tiny")  # its lp_app is global: cluster_random keeps its defaults
    assert tiny.baseline_choices()[2].options == {}
    assert [c.name for c in load_bench_config(preset="tiny", overrides=["baselines=[random]"]).choices()] == [
        "random", "lp_app", "s2l", "rds"]
    for bad, words in (("baselines=[longest]", "including random"),
                       ("selectors=[{method: longest}]", "reserved")):
        with pytest.raises(ConfigError, match=words):
            load_bench_config(preset="tiny", overrides=[bad])


# ------------------------------------------------------------------------------ the generators


def test_synthetic_sets_keep_the_old_pool_and_eval_and_add_a_disjoint_reference():
    d = load_bench_config(preset="tiny").data
    sets = synthetic_sets(d)
    shape = {"families": d.families, "difficulties": d.difficulties}
    pool = make_pool(d.n_pool, noise={"wrong": 0.1, "garbage": 0.05, "duplicate": 0.05}, seed=0, **shape)
    assert sets.pool == pool and sets.eval == make_test_set(d.n_eval, pool, seed=0, **shape)
    assert len(sets.reference) == 8 and [r["id"] for r in sets.reference][:2] == ["r00000", "r00001"]
    taken = {r["instruction"] for r in sets.pool + sets.eval}
    assert not taken & {r["instruction"] for r in sets.reference}
    assert sorted(r["family"] for r in sets.reference) == ["copy"] * 4 + ["reverse"] * 4


def _pair(i, human, gpt):
    return {"id": i, "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]}


def test_sharegpt_sets_draw_eval_and_reference_after_the_pool_without_repeats(monkeypatch):
    code = "```py\nx = 1\n```"
    pairs = [_pair("a", "hi", "Hello!"), _pair("b", "hi", "Hello!"), _pair("c", "long " * 50, "x"),
             _pair("d", "Fix it", code), _pair("e", "HI ", "hello!"),  # e repeats a pool pair: passed over
             _pair("f", "Why?", "Because."), _pair("g", "More code", code + " "),
             _pair("h", "Fix it", code),  # repeats d (already the eval set's)
             _pair("i", "Tell me", "A story."), _pair("j", "Fix this " + "y" * 40, code)]
    monkeypatch.setattr("proxysel.benchmarking.datasets.iter_pairs", lambda: (p for p in pairs))
    cfg = load_bench_config(preset="cpu", overrides=["data.n_pool=2", "data.n_eval=2", "data.n_reference=2",
                                                     "data.max_chars=30"])
    sets = sharegpt_sets(cfg.data)
    assert [p["id"] for p in sets.pool] == ["a", "b"]  # the pool keeps ShareGPT's repeats (the cpu preset's)
    assert [p["id"] for p in sets.eval] == ["d", "f"] and [p["id"] for p in sets.reference] == ["g", "i"]
    coded = dataclasses.replace(cfg.data, n_reference=1, category="has_code", category_max_chars=70)
    sets = sharegpt_sets(coded)
    assert [p["id"] for p in sets.eval] == ["d", "g"] and [p["id"] for p in sets.reference] == ["j"]
    with pytest.raises(UsageError, match=r"only 0 pairs for the reference set \(category has_code\)"):
        sharegpt_sets(dataclasses.replace(coded, category_max_chars=60))  # j has 64 characters


# ----------------------------------------------------------------------------------- groups


class _Ex:
    def __init__(self, i, record, texts=("q", "a")):
        from types import SimpleNamespace

        self.id, self.record = i, record
        self.messages = [SimpleNamespace(role=r, content=t) for r, t in zip(("user", "assistant"), texts)]


def test_eval_groups_from_a_field_a_rule_or_one_group():
    fam = [_Ex("1", {"family": "add"}), _Ex("2", {"family": "copy"})]
    assert eval_groups(fam, None) == (["add", "copy"], "record field family")
    mixed = [_Ex("1", {"family": "add"}), _Ex("2", {}, ("q", "import os"))]
    assert eval_groups(mixed, None)[0] == ["all", "all"]
    assert eval_groups(mixed, "has_code") == (["no code", "code"], "rule has_code")
    assert eval_groups(fam, "all") == (["all", "all"], "group_by all")
    with pytest.raises(ValueError, match="1 eval records have no field 'family' \\(first: \\['2'\\]\\)"):
        eval_groups(mixed, "family")
    # the field or rule behind the groups, for the keep rates of the pool by the same key
    assert [group_key(fam, None), group_key(mixed, None), group_key(mixed, "has_code"), group_key(fam, "all"),
            group_key([], None)] == ["family", None, "has_code", None, None]


def _kept(selector, seed, counts):
    """A cell whose keep rates by family are ``counts``: {family: (kept, pool)}."""
    return {"selector": selector, "budget": 0.3, "seed": seed,
            "keep_rates": {"family": {f: {"n": n, "kept": k, "rate": k / n} for f, (k, n) in counts.items()},
                           "noise": {"clean": {"n": 200, "kept": 0, "rate": 0.0}}}}


def test_under_kept_eval_groups_by_hand():
    # seed 0 keeps 60 of 200 (0.30), seed 1 keeps 40 of 200 (0.20): overall 0.25, the line 0.4 x 0.25 = 0.10.
    # count: 8 and 4 of 50 (mean 6 of 50, 0.12) is above it; code: 2 and 0 of 20 (0.05) is under it;
    # tiny (4 of the pool) is too small to list, garbage is not an eval group, and the noise field
    # (another key) is not read
    rows = [_kept("mid", 0, {"copy": (48, 100), "count": (8, 50), "code": (2, 20), "tiny": (0, 4),
                             "garbage": (2, 26)}),
            _kept("mid", 1, {"copy": (36, 100), "count": (4, 50), "code": (0, 20), "tiny": (0, 4),
                             "garbage": (0, 26)})]
    lines = under_kept_table(rows, "family", ["copy", "count", "code", "tiny"])
    assert lines[-3:] == ["| selector | budget | group | kept of pool | keep rate | overall rate |",
                          "|---|---|---|---|---|---|", "| mid | 0.3 | code | 1 of 20 | 0.05 | 0.25 |"]
    assert "`family` values kept at under 0.4 times" in lines[0]
    assert under_kept_table(rows, "family", ["copy", "count"]) == []
    assert under_kept_table(rows, "source", ["copy"]) == []


@pytest.mark.parametrize("texts, expected", [
    (("Explain", "Use `x` in prose, then ```\nprint(1)\n```"), True),
    (("Why does this fail?", "def f(x):\n    return x"), True),
    (("q", "SELECT name FROM users;"), True),
    (("q", "for (int i = 0; i < n; i++) {"), True),
    (("q", "console.log(x);"), True),
    (("Select the best answer (see below);", "I think (roughly) so."), False),
    (("Write a poem about classes", "A class of students went to import goods."), False),
])
def test_has_code(texts, expected):
    assert has_code(_Ex("x", {}, texts)) is expected


# ------------------------------------------------------------------ group and macro arithmetic

IDS = ["e1", "e2", "e3"]
GROUPS = ["a", "a", "b"]


def _cell(selector, budget, seed, loss, exact=None, tokens=(1, 3, 2)):
    arrays = ExampleArrays(list(IDS), np.asarray(loss, dtype=float), np.asarray(tokens, dtype=float),
                           None if exact is None else np.asarray(exact, dtype=float))
    return {"cell": f"{selector}-{budget}-s{seed}", "selector": selector, "budget": budget, "seed": seed,
            "n_selected": 10, "n_train": 10, "epochs": 1, "steps": 1, "train_seconds": 40.0 + 20 * seed,
            "train_flops": 600_000 + 60_000 * seed, "metrics": example_metrics(arrays, GROUPS),
            "per_example": example_record(arrays)}


def test_group_pooled_and_macro_metrics_by_hand():
    m = _cell("full", None, 0, [1, 3, 10], [1, 0, 1])["metrics"]
    # group a: (1*1 + 3*3) / (1 + 3) = 2.5; group b: 10. Pooled: (1 + 9 + 20) / 6 = 5.
    assert m["per_group"] == {"a": {"n": 2, "eval_loss": 2.5, "exact_match": 0.5},
                              "b": {"n": 1, "eval_loss": 10.0, "exact_match": 1.0}}
    assert (m["eval_loss"], m["eval_loss_macro"]) == (5.0, 6.25)
    assert m["eval_loss_example"] == pytest.approx(14 / 3)
    assert (m["exact_match"], m["exact_match_macro"]) == (pytest.approx(2 / 3), 0.75)
    # a truncated example (NaN loss) is left out of the loss, counted, and kept for exact match
    t = _cell("full", None, 0, [1, np.nan, 10], [1, 0, 1])["metrics"]
    assert (t["eval_loss"], t["eval_loss_macro"], t["eval_truncated"]) == (7.0, 5.5, 1)
    rec = _cell("full", None, 0, [1, np.nan, 10])["per_example"]
    assert rec["loss"] == [1.0, None, 10.0]
    assert example_arrays({"per_example": rec}).tokens.tolist() == [1, 3, 2]
    assert example_arrays({"per_example": rec}).answers is None  # a result written before answers were kept
    kept = ExampleArrays(list(IDS), np.ones(3), np.ones(3), np.array([1.0, 0.0, 1.0]), ["a b", "x", ""])
    assert example_arrays({"per_example": example_record(kept)}).answers == ["a b", "x", ""]


def test_macro_metrics_through_the_bench_aggregation_and_tables():
    rows = [_cell("full", None, 0, [1, 3, 10], [1, 0, 1]), _cell("full", None, 1, [2, 2, 4], [1, 1, 0])]
    (agg,) = aggregate(rows)
    # seed 0: macro loss (2.5 + 10) / 2 = 6.25; seed 1: a (2 + 6) / 4 = 2, b 4 -> 3
    assert agg["eval_loss_macro"]["mean"] == 4.625
    assert agg["eval_loss_macro"]["std"] == pytest.approx(3.25 / math.sqrt(2))
    # exact match macro: seed 0 (0.5 + 1) / 2 = 0.75, seed 1 (1 + 0) / 2 = 0.5
    assert agg["exact_match_macro"]["mean"] == 0.625
    cfg = load_bench_config(preset="tiny")
    md = results_markdown(cfg, aggregate(rows), rows, None)
    assert "| full | 1 (full) | 10 | 10 | 1 | 1 | 2 | 62.5 ± 17.7 | 66.7 ± 0.0 |" in md
    # per-group table of the loss: a (2.5 + 2) / 2, b (10 + 4) / 2, macro (2.25 + 7) / 2
    assert "| full | 1 (full) | 2.2500 | 7.0000 | 4.6250 |" in md
    assert "| full | 1 (full) | 75.0 | 50.0 | 62.5 |" in md


# --------------------------------------------------------------------------- paired statistics


def test_comparisons_pair_cells_by_seed_and_eval_example():
    rows = []
    for s, base in enumerate((2.0, 4.0)):
        rows += [_cell("random", 0.3, s, [base] * 3), _cell("sel", 0.3, s, [base - 0.5] * 3),
                 _cell("full", None, s, [base - 1.0] * 3)]
    rows.append({**_cell("old", 0.3, 0, [0.0] * 3), "per_example": None})  # written before the arrays
    found = comparisons(rows, GROUPS, IDS, metric="eval_loss", n_boot=200)
    out = {(c["selector"], c["baseline"]): c for c in found}
    assert set(out) == {("random", "full"), ("sel", "random"), ("sel", "full")}
    c = out[("sel", "random")]
    # paired by seed: -0.5 in both (a mismatched pairing would give -2.5 and +1.5)
    assert c["deltas"] == [-0.5, -0.5] and c["wins"] == 2 and (c["lo"], c["hi"]) == (-0.5, -0.5)
    assert c["verdict"] == "beats" and c["seeds"] == [0, 1] and c["groups"] == {"a": 2, "b": 1}
    assert out[("sel", "full")]["verdict"] == "trails" and out[("sel", "full")]["mean"] == 0.5
    assert comparisons(rows, GROUPS, ["e3", "e2", "e1"], metric="eval_loss") == []  # other eval ids: no pairs


def test_comparisons_take_any_selector_at_the_same_budget_as_a_baseline():
    rows = []
    for s, base in enumerate((2.0, 4.0)):
        rows += [_cell("random", 0.3, s, [base] * 3), _cell("longest", 0.3, s, [base - 1.0] * 3),
                 _cell("sel", 0.3, s, [base - 0.5] * 3), _cell("longest", 0.1, s, [0.0] * 3)]
    found = comparisons(rows, GROUPS, IDS, metric="eval_loss", n_boot=200, baselines=("longest",))
    out = {(c["selector"], c["budget"], c["baseline"]): c for c in found}
    # paired with longest at 0.3 only (not at 0.1, and longest not with itself)
    assert set(out) == {("random", 0.3, "longest"), ("sel", 0.3, "longest")}
    assert out[("sel", 0.3, "longest")]["deltas"] == [0.5, 0.5]
    assert out[("sel", 0.3, "longest")]["verdict"] == "trails"


# ------------------------------------------------------------------------------------ ledger


def test_choice_stages_come_from_the_signal_registry():
    def stages(method, **options):
        return choice_stages(SelectorChoice(method=method, options=options))

    assert stages("lp_app", clusters=20) == ["train-proxy", "embedding"]
    assert stages("lp_app", within_clusters=False) == ["train-proxy"]
    assert stages("s2l") == ["train-proxy"]
    assert stages("random") == stages("longest") == []  # token counts cost no model pass
    assert stages("cluster_random") == ["embedding"]
    assert stages("color") == ["color-conditional", "color"]
    assert stages("rds") == ["rds", "rds_reference"]
    # the per-epoch columns a bench derives from ppl_epoch are charged to train-proxy too
    assert stages("top", signal="ppl_5", order="low") == ["train-proxy"]
    assert stages("top", signal="lp_app_2", order="low") == stages("top", signal="lp_10") == ["train-proxy"]
    assert stages("top", signal="ppl", order="low") == ["loss"]


RECORDS = {
    "train-proxy": {"model": "proxy", "lora": False, "train_tokens": 1000, "forward_tokens": 400, "passes": 4,
                    "seconds": 10.0, "missing": []},
    "embedding": {"model": "minilm", "lora": False, "train_tokens": 0, "forward_tokens": None, "passes": 0,
                  "seconds": 2.0, "missing": ["forward_tokens (not recorded)"]},
}
STAGES = {"random": [], "cluster_random": ["embedding"], "lp_app": ["train-proxy", "embedding"],
          "rds": ["rds", "rds_reference"]}


def test_ledger_rows_by_hand():
    rows = {r["selector"]: r for r in ledger_rows(STAGES, RECORDS, {"proxy": 100}, 630_000.0, 50.0)}
    lp = rows["lp_app"]
    # 6 N T = 6 * 100 * 1000; 2 N T = 2 * 100 * 400; against the full run's 630,000 FLOPs and 50 s
    assert (lp["train_flops"], lp["forward_flops"], lp["flops"]) == (600_000, 80_000, 680_000)
    assert lp["share_pct"] == pytest.approx(100 * 680_000 / 630_000) and lp["seconds_share_pct"] == 24.0
    assert lp["unknown"] == ["embedding: forward_tokens (not recorded)"]
    assert (rows["cluster_random"]["flops"], rows["cluster_random"]["seconds_share_pct"]) == (0, 4.0)
    assert (rows["random"]["flops"], rows["random"]["share_pct"], rows["random"]["unknown"]) == (0, 0.0, [])
    assert rows["rds"]["unknown"] == ["rds: not in the proxy run", "rds_reference: not in the proxy run"]


def test_ledger_through_the_bench_outputs(tmp_path):
    cfg = load_bench_config(preset="tiny", fields={"out": str(tmp_path)})
    rows = [_cell("full", None, 0, [1, 3, 10]), _cell("full", None, 1, [2, 2, 4]),
            _cell("random", 0.3, 0, [2, 3, 10]), _cell("random", 0.3, 1, [2, 3, 5]),
            _cell("lp_app", 0.3, 0, [1, 3, 10]), _cell("lp_app", 0.3, 1, [2, 3, 4])]
    context = Context(groups=GROUPS, eval_ids=IDS, grouping="record field family", n_pool=20, n_eval=3,
                      n_reference=2, stages=STAGES, records=RECORDS, n_params={"proxy": 100}, n_boot=100)
    paths = write_outputs(cfg, tmp_path, rows, None, None, context=context)
    assert {"stats.json", "ledger.json", "results.md", "results.csv", "plot.png"} <= set(paths)
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    # the full-data target run: the mean of its cells' 600,000 and 660,000 FLOPs (40 and 60 s)
    assert ledger["full_target_train_flops"] == 630_000 and ledger["full_target_train_seconds"] == 50
    md = (tmp_path / "results.md").read_text()
    assert "| lp_app | train-proxy, embedding | 1,000 | 6e+05 | 8e+04 | 12.0 | 108 | 24 |" in md
    assert "Sets: pool 20, reference 2, eval 3" in md
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["headline"] == {"metric": "eval_loss_macro", "higher_is_better": False}
    c = next(c for c in stats["comparisons"]["eval_loss"]
             if (c["selector"], c["baseline"]) == ("lp_app", "random"))
    # seed 0: a (1 + 9) / 4 - (2 + 9) / 4 = -0.25, b 0 -> macro -0.125; seed 1: a 0, b 4 - 5 = -1 -> -0.5
    assert c["deltas"] == [-0.125, -0.5] and c["wins"] == 2
    assert "| lp_app | 0.3 | -0.3125 ± 0.27 | 2 of 2 |" in md  # std: 0.375 / sqrt(2)
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:13] == ["selector", "budget", "seed", "n_selected", "n_train", "epochs", "steps",
                           "eval_loss", "eval_loss_example", "exact_match", "win_rate", "train_seconds",
                           "eval_seconds"]
    assert {"eval_loss_macro", "exact_match_macro", "tokens_trained", "train_flops"} <= set(header)


def test_the_score_signals_a_bench_computes_come_from_the_registries():
    from proxysel.benchmarking.runner import score_signals_needed

    # cluster_random reads embedding, rds its vectors; longest's token counts come with train-proxy
    assert score_signals_needed(load_bench_config(preset="tiny")) == ["embedding", "rds"]
    assert score_signals_needed(load_bench_config(preset="cpu-targeted")) == ["embedding", "color", "rds"]
    assert score_signals_needed(load_bench_config(preset="tiny", overrides=[
        "baselines=[random]", "selectors=[{method: top, signal: loss}]"])) == ["loss"]


def test_verdict_intervals_in_points_have_one_decimal_and_in_nats_four_digits():
    from proxysel.benchmarking.analysis import Headline

    c = {"selector": "sel", "budget": 0.3, "baseline": "full", "mean": -0.03754, "std": 0.081, "wins": 3,
         "n_seeds": 5, "lo": -0.05912, "hi": -0.01749, "verdict": "trails"}
    points = verdict_table([c], Headline("exact_match"), 0.95)[-1]
    assert points == "| sel | 0.3 | – | – | – | – | – | -3.8 ± 8.1 | 3 of 5 | [-5.9, -1.7] | **trails** | – |"
    # with the interval over seeds (stats.seed_interval), its own column
    seeds = {**c, "seed_lo": -0.1381, "seed_hi": 0.0630, "seed_verdict": "ties", "seeds_needed": 20}
    assert verdict_table([seeds], Headline("exact_match"), 0.95)[-1].endswith(
        "| **trails** | [-13.8, +6.3] ties (~20 seeds to resolve) |")
    nats = verdict_table([c], Headline("eval_loss"), 0.95)[-1]
    assert "-0.03754 ± 0.081 | 3 of 5 | [-0.05912, -0.01749]" in nats
