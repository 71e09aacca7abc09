"""`proxysel bench --preset tiny` end to end: table, plot, keep rates, transfer, resume, sanity; the
reference set and rds, the baselines, per-example arrays, verdicts and the ledger."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest

pytest.importorskip("torch")

from proxysel.benchmarking.config import load_bench_config  # noqa: E402
from proxysel.benchmarking.ledger import proxy_costs_from_run  # noqa: E402
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


def _main_table(md):
    """The rows of results.md's first table (header first)."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| selector | budget | examples"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start], lines[start + 2:end]


def test_every_cell_has_a_row_and_the_table_aggregates_seeds(bench):
    out, _ = bench
    cfg = load_bench_config(preset="tiny")
    rows = _rows(out)
    assert sorted((r["selector"], r["budget"], r["seed"]) for r in rows) == sorted(
        (c.selector, "" if c.budget is None else str(c.budget), str(c.seed)) for c in plan_cells(cfg))
    header, table = _main_table((out / "results.md").read_text())
    keys = [tuple(c.strip() for c in ln.split("|")[1:3]) for ln in table]
    expected = [("base", "0 (untrained)"), ("full", "1 (full)")] + [
        (s, f"{b:g}") for b in cfg.budgets
        for s in ["random", "cluster_random", "longest", "lp_app", "rds", "s2l"]]
    assert keys == expected  # base, full, then per budget random first and the rest by name
    col = [c.strip() for c in header.split("|")].index("seeds")
    assert {ln.split("|")[col].strip() for ln in table[1:]} == {str(len(cfg.seeds))}
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
    renderer = Renderer(AutoTokenizer.from_pretrained(out / "models" / "target"), max_length=64,
                        template="auto")
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


def test_a_cell_written_before_per_example_arrays_is_trained_again(bench, capsys):
    out, _ = bench
    path = out / "cells" / "base" / "result.json"
    old = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in old.items() if k != "per_example"}))
    assert main(["bench", "--preset", "tiny", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("training it again") == 1 and "base: its result has no per-example arrays" in text
    new = json.loads(path.read_text())
    assert (new["per_example"] == old["per_example"]
            and new["metrics"]["eval_loss"] == old["metrics"]["eval_loss"])


def test_changed_recipe_is_refused_without_overwrite(bench, capsys):
    out, _ = bench
    assert main(["-q", "bench", "--preset", "tiny", "--out", str(out), "target.lr=0.02"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_match_steps_gives_subsets_the_full_runs_steps(tmp_path):
    out = tmp_path / "steps"
    assert main(["-q", "bench", "--preset", "tiny", "--out", str(out), "--match", "steps", "seeds=[0]",
                 "budgets=[0.3]", "selectors=[]", "baselines=[random]", "transfer.enabled=false"]) == 0
    rows = {r["selector"]: r for r in _rows(out)}
    assert int(rows["random"]["epochs"]) > int(rows["full"]["epochs"])
    assert abs(int(rows["random"]["steps"]) - int(rows["full"]["steps"])) <= 3


def test_reference_set_reaches_rds_and_stays_out_of_the_eval_set(bench):
    from proxysel.data import read_pool
    from proxysel.store import Run

    out, _ = bench
    ref, held_out = read_pool(out / "data" / "reference.jsonl"), read_pool(out / "data" / "eval.jsonl")
    assert len(ref.examples) == 8 and len(held_out.examples) == 24
    with Run.open(out / "proxy", create=False) as run:
        assert run.manifest["reference"]["fingerprint"] == ref.fingerprint
        assert {"rds", "rds_reference"} <= set(run.vector_sets())
        meta = run.read_selection("rds-0.3-s0").meta
    assert meta["reference_fingerprint"] == ref.fingerprint and meta["n_selected"] == 36
    assert "Sets: pool 120, reference 8, eval 24" in (out / "results.md").read_text()


def test_longest_and_cluster_random_cells_are_trained(bench):
    import pyarrow.parquet as pq

    from proxysel.store import RunFolder

    out, _ = bench
    rows = _rows(out)
    for name in ("longest", "cluster_random"):
        assert sorted((r["budget"], r["seed"]) for r in rows if r["selector"] == name) == [
            ("0.01", "0"), ("0.01", "1"), ("0.3", "0"), ("0.3", "1")]
    scores = pq.read_table(out / "proxy" / "scores.parquet", columns=["id", "n_response_tokens"]).to_pydict()
    n = dict(zip(scores["id"], scores["n_response_tokens"]))
    longest = RunFolder(out / "proxy").selection_ids("longest-0.3-s0")
    others = sorted((n[i] for i in n if i not in set(longest)), reverse=True)
    assert len(longest) == 36 and min(n[i] for i in longest) >= others[0]


def test_cells_keep_per_example_arrays_and_the_macro_metrics(bench):
    from proxysel.benchmarking.stats import group_metric

    out, _ = bench
    result = json.loads((out / "cells" / "rds-0.3-s0" / "result.json").read_text())
    ex, m = result["per_example"], result["metrics"]
    assert ex["id"] == [f"t{i:05d}" for i in range(24)] and len(ex["loss"]) == len(ex["tokens"]) == 24
    families = [json.loads(ln)["family"] for ln in (out / "data" / "eval.jsonl").read_text().splitlines()]
    loss = group_metric(ex["loss"], families, weights=ex["tokens"])
    assert m["eval_loss"] == pytest.approx(loss.pooled) and m["eval_loss_macro"] == pytest.approx(loss.macro)
    assert set(m["per_group"]) == {"copy", "reverse"} and m["exact_match_macro"] == 0.0
    row = next(r for r in _rows(out) if r["selector"] == "rds" and r["budget"] == "0.3" and r["seed"] == "0")
    assert float(row["eval_loss_macro"]) == pytest.approx(loss.macro)
    # every greedy answer is kept for error analysis, and exact match is that answer against the output
    evals = [json.loads(ln) for ln in (out / "data" / "eval.jsonl").read_text().splitlines()]
    assert len(ex["answer"]) == 24 and all(isinstance(a, str) for a in ex["answer"])
    assert ex["exact"] == [int(a == r["output"].strip()) for a, r in zip(ex["answer"], evals)]
    assert [s["answer"] for s in m["samples"]] == ex["answer"][:8]


def test_the_full_runs_flops_are_6_n_t_with_t_counted_independently(bench):
    from transformers import AutoTokenizer

    from proxysel.benchmarking.ledger import model_params, train_flops
    from proxysel.data import read_pool
    from proxysel.models.loader import load_causal_lm
    from proxysel.models.render import Renderer

    out, _ = bench
    full = json.loads((out / "cells" / "full-s0" / "result.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(out / "models" / "target")
    renderer = Renderer(tokenizer, max_length=64, template="auto")
    tokens = sum(renderer.encode(e).n_tokens for e in read_pool(out / "data" / "pool.jsonl").examples)
    assert full["tokens_trained"] == 4 * tokens  # 4 epochs over every pool example, padding excluded
    n = model_params(load_causal_lm(str(out / "models" / "target")).model)
    assert full["n_params"] == n and full["train_flops"] == train_flops(n, 4 * tokens) == 6 * n * 4 * tokens


def test_verdicts_stats_and_ledger(bench):
    out, _ = bench
    md = (out / "results.md").read_text()
    assert "**Headline: macro exact match %**" in md and "Verdicts on the macro exact match %" in md
    stats = json.loads((out / "stats.json").read_text())
    assert stats["groups"] == {"copy": 12, "reverse": 12}
    assert set(stats["comparisons"]) == {"exact_match", "eval_loss"}
    pairs = {(c["selector"], c["budget"], c["baseline"]) for c in stats["comparisons"]["eval_loss"]}
    for b in (0.01, 0.3):
        assert ("random", b, "full") in pairs and ("random", b, "random") not in pairs
        assert {(s, b, base) for s in ("longest", "cluster_random", "lp_app", "s2l", "rds")
                for base in ("random", "full")} <= pairs
    # the full pool beats a 1% random subset by far: every 1% selection trails full data on the loss
    tiny_vs_full = [c for c in stats["comparisons"]["eval_loss"]
                    if (c["budget"], c["baseline"]) == (0.01, "full")]
    assert {c["verdict"] for c in tiny_vs_full} == {"trails"}
    # and each gets the t interval over its seeds (stats.seed_interval), shown in its own column
    for c in tiny_vs_full:
        assert c["n_seeds"] >= 2 and c["seed_lo"] <= c["mean"] <= c["seed_hi"]
        assert c["seed_verdict"] in ("beats", "ties", "trails")
    assert "| verdict vs random | over seeds |" in md
    ledger = {r["selector"]: r for r in json.loads((out / "ledger.json").read_text())["selectors"]}
    assert ledger["random"]["flops"] == ledger["longest"]["flops"] == 0
    assert ledger["cluster_random"]["stages"] == ["embedding"]
    assert ledger["rds"]["stages"] == ["rds", "rds_reference"]
    assert ledger["lp_app"]["stages"] == ["train-proxy"] and ledger["lp_app"]["train_tokens"] > 0
    assert 0 < ledger["lp_app"]["share_pct"]
    assert "selection cost as % of the full-data target run" in md.lower()


def test_a_copied_bench_folder_keeps_its_trained_cells(bench, tmp_path, capsys):
    """Cells name the scratch target by its folder's revision, not its path: a copy of the data,
    the models and the cells trains its proxy again (its run records paths) and no target."""
    import shutil

    out, _ = bench
    copy = tmp_path / "copied"
    for part in ("data", "models", "cells"):
        shutil.copytree(out / part, copy / part)
    cells = {p.parent.name for p in (copy / "cells").glob("*/result.json")}
    assert main(["bench", "--preset", "tiny", "--out", str(copy)]) == 0
    text = capsys.readouterr().out
    assert "training on" not in text and all(f"{c}: cached" in text for c in cells)


def test_same_cell_ignores_a_model_folders_path_but_not_a_hub_id():
    from proxysel.benchmarking.runner import same_cell

    fp = {"target": "/a/models/target", "revision": "93db493ad10817b2", "seed": 0}
    assert same_cell(fp, {**fp, "target": "/b/models/target"})
    assert not same_cell(fp, {**fp, "target": "/b/models/target", "revision": "0123456789abcdef"})
    assert not same_cell(fp, {**fp, "seed": 1})
    hub = {"target": "org/model-a", "revision": "hub", "seed": 0}
    assert not same_cell(hub, {**hub, "target": "org/model-b"})


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
    assert {r["selector"] for r in _rows(out)} == {"base", "full", "random", "longest", "cluster_random",
                                                   "middle", "lp_app-i2"}


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


def test_a_filter_and_a_chain_in_a_bench(tmp_path):
    """A selector with its own budget is a filter (selected per seed, not trained); one that starts
    `from` it keeps a subset of its kept set at every budget, and pays for its signals in the ledger."""
    from proxysel.store import RunFolder

    out = tmp_path / "chain"
    selectors = ("[{name: mid, method: top, signal: ppl_0, order: middle, budget: 0.9}, "
                 "{name: mid-lp_app, method: lp_app, within_clusters: false, from: mid}]")
    assert main(["-q", "bench", "--preset", "tiny", "--out", str(out), "seeds=[0]", "budgets=[0.3]",
                 f"selectors={selectors}", "transfer.enabled=false", "baselines=[random]"]) == 0
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert "mid-lp_app-0.3-s0" in cells and not any(c.startswith("mid-0") for c in cells)
    proxy = RunFolder(out / "proxy")
    parent, child = set(proxy.selection_ids("mid-0.9-s0")), set(proxy.selection_ids("mid-lp_app-0.3-s0"))
    assert len(parent) == 108 and len(child) == 36 and child <= parent
    meta = proxy.read_selection("mid-lp_app-0.3-s0").meta
    assert [s["name"] for s in meta["chain"]] == ["mid-0.9-s0", "mid-lp_app-0.3-s0"]
    with pytest.raises(Exception, match="selectors.from.: .nope. is not one of the selections"):
        load_bench_config(preset="tiny", overrides=["selectors=[{method: lp_app, from: nope}]"])


def test_quotas_over_the_reference_groups_in_a_bench(tmp_path):
    """cluster_by: reference: the bench embeds the reference set too (embedding_reference, charged
    to the selector in the ledger), and the subset's quotas follow the square roots of the groups'
    sizes, the groups being the nearest reference family of every pool row."""
    from proxysel.cluster import nearest_group
    from proxysel.selectors.base import allocate_by_power
    from proxysel.store import RunFolder

    out = tmp_path / "refgroups"
    selectors = "[{name: ref-sqrt, method: cluster_random, cluster_by: reference, size_power: 0.5}]"
    assert main(["-q", "bench", "--preset", "tiny", "--out", str(out), "seeds=[0]", "budgets=[0.3]",
                 f"selectors={selectors}", "transfer.enabled=false", "baselines=[random]"]) == 0
    proxy = RunFolder(out / "proxy")
    assert {"embedding", "embedding_reference"} <= set(proxy.vector_sets())
    ids, pool = proxy.read_vectors("embedding")
    ref_ids, ref = proxy.read_vectors("embedding_reference")
    family = {r["id"]: r["family"] for r in map(json.loads, (out / "data" / "reference.jsonl").open())}
    labels, names = nearest_group(pool, ref, [family[i] for i in ref_ids])
    sizes = np.bincount(labels, minlength=len(names))
    kept = set(proxy.selection_ids("ref-sqrt-0.3-s0"))
    per_group = np.bincount([labels[k] for k, i in enumerate(ids) if i in kept], minlength=len(names))
    assert len(names) >= 2 and per_group.tolist() == allocate_by_power(sizes, len(kept), 0.5).tolist()
    row = next(r for r in json.loads((out / "ledger.json").read_text())["selectors"]
               if r["selector"] == "ref-sqrt")
    assert "embedding_reference" in row["stages"] and not row["unknown"]


def test_the_ledger_counts_the_score_stages_of_a_trained_proxy(tmp_path):
    """With signals_from: trained the loss stage runs the proxy's last checkpoint, named by its path:
    the ledger counts that model's N too, so ppl's scoring pass has FLOPs (2·N·T) and no unknown N;
    and a selection that reads ppl pays for the proxy's training, which those weights needed."""
    out = tmp_path / "trained"
    assert main(["-q", "bench", "--preset", "tiny", "--out", str(out), "seeds=[0]", "budgets=[0.3]",
                 "signals_from=trained", "proxy.keep_checkpoints=true",
                 "selectors=[{name: low, method: top, signal: ppl, order: low}]",
                 "transfer.enabled=false", "baselines=[random]"]) == 0
    row = {r["selector"]: r for r in json.loads((out / "ledger.json").read_text())["selectors"]}["low"]
    assert row["stages"] == ["train-proxy", "loss"] and row["forward_tokens"] > 0
    assert not any("no parameter count" in u for u in row["unknown"]), row["unknown"]
    n = json.loads((out / "ledger-params.json").read_text())
    assert len(n) == 2 and len(set(n.values())) == 1  # the proxy and its checkpoint: the same N
    records = proxy_costs_from_run(out / "proxy")
    assert row["train_tokens"] == records["train-proxy"]["train_tokens"] > 0
    passes = records["train-proxy"]["forward_tokens"] + records["loss"]["forward_tokens"]
    assert row["forward_tokens"] == passes
    n_proxy = next(iter(n.values()))
    assert row["forward_flops"] == 2 * n_proxy * row["forward_tokens"]
    assert row["train_flops"] == 6 * n_proxy * row["train_tokens"]



def test_more_seeds_retrains_a_bench_cell_with_the_bench_code(bench, tmp_path):
    """benchmarks/more_seeds.py: seed 0 again reproduces the bench's own cell (same subset, same
    recipe), a new seed trains the same subset, and a selector that draws per seed is refused."""
    from conftest import load_benchmark_script

    out, _ = bench
    more = load_benchmark_script("more_seeds")
    extra = tmp_path / "more"
    assert more.main([str(out), "--cells", "longest-0.3-s0", "--seeds", "0", "2", "--out", str(extra)]) == 0
    mine = json.loads((extra / "cells" / "longest-0.3-s0" / "result.json").read_text())
    theirs = json.loads((out / "cells" / "longest-0.3-s0" / "result.json").read_text())
    assert mine["metrics"]["eval_loss"] == pytest.approx(theirs["metrics"]["eval_loss"], rel=1e-6)
    assert mine["fingerprint"]["train_ids"] == theirs["fingerprint"]["train_ids"]
    new = json.loads((extra / "cells" / "longest-0.3-s2" / "result.json").read_text())
    assert new["seed"] == 2 and new["fingerprint"]["train_ids"] == theirs["fingerprint"]["train_ids"]
    assert (extra / "data" / "eval.jsonl").read_bytes() == (out / "data" / "eval.jsonl").read_bytes()
    with pytest.raises(SystemExit, match="draws per seed"):
        more.main([str(out), "--cells", "random-0.3-s0", "--seeds", "2", "--out", str(extra)])
