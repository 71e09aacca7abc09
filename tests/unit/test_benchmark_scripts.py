"""Every script under benchmarks/ builds its command line: `--help` runs and prints its usage.

The scripts run rarely and by hand, so a renamed preset key or option would otherwise surface only
when someone needs the script (calibrate_skewed.py once read a preset key that had been renamed).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("*.py"))


def test_the_scripts_are_found():
    assert len(SCRIPTS) >= 5, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_help_runs(script):
    r = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage:" in r.stdout


def test_calibrate_skewed_trains_and_prints_its_table(tmp_path):
    """A small end-to-end run: the script's own calls into the bench (train_target, evaluate_target)
    have changed shape before, which --help cannot see."""
    script = SCRIPTS[0].parent / "calibrate_skewed.py"
    args = ["--n-pool", "200", "--eval-per-family", "2", "--epochs", "1", "--no-full", "--random", "0.1",
            "--sqrt", "0.1", "--work", str(tmp_path)]
    r = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line for line in r.stdout.splitlines()
            if line.startswith(("| random-0.1-s0 |", "| sqrt-0.1-s0 |"))]
    assert [row.split(" | ")[1] for row in rows] == ["20", "20"]  # 10% of 200, each


BENCH_CONFIGS = sorted(SCRIPTS[0].parent.glob("bench_*.yaml"))


@pytest.mark.parametrize("path", BENCH_CONFIGS, ids=[p.name for p in BENCH_CONFIGS])
def test_bench_configs_load_over_the_preset_they_name(path):
    """Each recorded bench config loads over the preset its header names: its fields exist, its
    selectors are registered and its chains resolve."""
    import re

    from proxysel.benchmarking.config import load_bench_config

    named = re.search(r"--preset ([a-z-]+)", path.read_text(encoding="utf-8"))
    assert named, f"{path.name} names no --preset in its header"
    cfg = load_bench_config(path, preset=named.group(1))
    assert cfg.trained_choices()


def test_calibrate_subset_draws_the_family_quotas_from_a_filter(tmp_path):
    """--candidates: the oracle's sqrt family quotas (weights from the pool's family sizes), drawn
    only from what a selection kept, whatever the noise labels say."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import load_benchmark_script

    calibrate = load_benchmark_script("calibrate_skewed")
    pool = ([{"id": f"a{i}", "family": "a", "noise": "clean"} for i in range(16)]
            + [{"id": f"b{i}", "family": "b", "noise": "wrong"} for i in range(4)]
            + [{"id": f"g{i}", "family": "garbage", "noise": "garbage"} for i in range(5)])
    ids = [r["id"] for r in pool]
    filtered = {"a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2", "b3"}
    pq.write_table(pa.table({"id": ids, "selected": [i in filtered for i in ids]}),
                   tmp_path / "selection.parquet")
    kept = calibrate.kept_ids(tmp_path)
    assert kept == filtered
    # 6 of 25; sqrt weights 4 (16 a's) and 2 (4 b's): quotas 4 and 2, from the kept rows only
    chosen = calibrate.subset(pool, "sqrt", 0.24, seed=0, candidates=kept)
    assert sorted(c[0] for c in chosen) == ["a", "a", "a", "a", "b", "b"] and set(chosen) <= kept
    # without candidates the labels decide: no b is clean, so a takes all 6
    assert sorted(c[0] for c in calibrate.subset(pool, "sqrt", 0.24, seed=0)) == ["a"] * 6
    # equal quotas of 4 of 25: 2 each; 10 of 25 cannot be met from the 9 kept rows
    assert sorted(c[0] for c in calibrate.subset(pool, "balanced", 0.16, seed=0, candidates=kept)) == \
        ["a", "a", "b", "b"]
    with pytest.raises(ValueError, match="cannot allocate 10"):
        calibrate.subset(pool, "balanced", 0.4, seed=0, candidates=kept)
    # drop: the wrong b's leave the candidates, so 5 of 25 are the 5 kept a's, and 6 are too many
    assert sorted(calibrate.subset(pool, "sqrt", 0.2, seed=0, candidates=kept, drop=("wrong",))) == \
        ["a0", "a1", "a2", "a3", "a4"]
    with pytest.raises(ValueError, match="cannot allocate 6"):
        calibrate.subset(pool, "sqrt", 0.24, seed=0, candidates=kept, drop=("wrong",))
    # weights: b's weight 2 * 2 against a's 4: quotas 3 and 3
    assert sorted(c[0] for c in calibrate.subset(pool, "sqrt", 0.24, seed=0, candidates=kept,
                                                 weights={"b": 2.0})) == ["a"] * 3 + ["b"] * 3
    # sizes from the candidates: 5 a's and 4 b's kept, sqrt 2.24 against 2: quotas 3 and 3
    assert sorted(c[0] for c in calibrate.subset(pool, "sqrt", 0.24, seed=0, candidates=kept,
                                                 sizes_from="candidates")) == ["a"] * 3 + ["b"] * 3
    assert calibrate.family_weights(["add=0.5", "code=1.5"]) == {"add": 0.5, "code": 1.5}
    with pytest.raises(SystemExit, match="FAMILY=NUMBER"):
        calibrate.family_weights(["add"])


def test_noise_auc_counts_pairs_within_a_group_and_ties_as_half():
    import numpy as np

    from conftest import load_benchmark_script

    within_auc = load_benchmark_script("noise_auc").within_auc
    score = np.array([3.0, 1.0, 2.0, 1.0, 1.0, 5.0, 9.0])
    positive = np.array([1, 0, 0, 1, 0, 0, 1], dtype=bool)
    negative = ~positive
    groups = np.array([0, 0, 0, 1, 1, 1, 2])
    # group 0: 3 beats 1 and 2 (2 of 2); group 1: 1 ties 1 and loses to 5 (0.5 of 2); group 2 has
    # no negative, so its 9 counts for nothing: 2.5 of 4 pairs
    assert within_auc(score, positive, negative, groups) == 0.625
    assert np.isnan(within_auc(score, positive, negative, np.arange(7)))


def test_noise_auc_level_bias_pairs_clean_records_of_each_level_with_the_lowest_within_a_group():
    import numpy as np

    from conftest import load_benchmark_script

    level_bias = load_benchmark_script("noise_auc").level_bias
    score = np.array([1.0, 2.0, 3.0, 0.5, 9.0, 5.0, 4.0, 6.0])
    level = np.array(["1", "2", "10", "2", "1", "2", "1", "10"])
    clean = np.array([1, 1, 1, 1, 0, 1, 1, 1], dtype=bool)  # the 9.0 (level 1) is noise: not paired
    within = np.array(["a", "a", "a", "a", "a", "b", "b", "b"])
    # level 2 over 1: a: 2.0 > 1.0, 0.5 < 1.0 (1 of 2); b: 5.0 > 4.0 (1 of 1) -> 2 of 3
    # level 10 over 1 (10 sorts after 2, as a number): a: 3.0 > 1.0; b: 6.0 > 4.0 -> 2 of 2
    assert level_bias(score, level, clean, within) == {"2": 2 / 3, "10": 1.0}


def test_noise_auc_joins_a_column_of_several_runs_by_id(tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import load_benchmark_script

    joined_column = load_benchmark_script("noise_auc").joined_column
    for name, ids, loss in (("a", ["1", "3"], [0.5, 3.0]), ("b", ["2", "3"], [2.0, None])):
        (tmp_path / name).mkdir()
        table = pa.table({"id": ids, "loss": pa.array(loss, pa.float64())})
        pq.write_table(table, tmp_path / name / "scores.parquet")
    # id 3: run b's null comes later and wins (NaN); id 4 is in no run
    got = joined_column("loss", [tmp_path / "a", tmp_path / "b"], ["2", "1", "3", "4"])
    assert got[:2].tolist() == [2.0, 0.5] and np.isnan(got[2]) and np.isnan(got[3])


def test_pooled_seeds_pairs_cells_across_folders_and_gives_both_intervals(tmp_path):
    # Two folders, seeds 0-1 and 2; four eval examples in two families. The selector's exact match
    # differs from random's by one example per seed: seed 0 +1 in family a (macro +0.25 = (1/2)/2),
    # seed 1 +1 in b (+0.25), seed 2 -1 in a (-0.25): mean +1/12, std 0.2887, t(0.975, 2) 4.3027.
    import json
    import math
    evals = [{"id": f"e{i}", "family": "ab"[i // 2], "instruction": "x", "output": "y"} for i in range(4)]
    exact = {("random", 0): [0, 0, 0, 0], ("sel", 0): [1, 0, 0, 0],
             ("random", 1): [1, 0, 0, 0], ("sel", 1): [1, 0, 1, 0],
             ("random", 2): [1, 1, 0, 0], ("sel", 2): [1, 0, 0, 0]}
    for folder, seeds in (("a", (0, 1)), ("b", (2,))):
        (tmp_path / folder / "data").mkdir(parents=True)
        (tmp_path / folder / "data" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
        for (name, seed), em in exact.items():
            if seed not in seeds:
                continue
            cell = tmp_path / folder / "cells" / f"{name}-0.3-s{seed}"
            cell.mkdir(parents=True)
            cell.joinpath("result.json").write_text(json.dumps({
                "selector": name, "budget": 0.3, "seed": seed,
                "metrics": {"exact_match_macro": (sum(em[:2]) / 2 + sum(em[2:]) / 2) / 2},
                "per_example": {"id": [r["id"] for r in evals], "loss": [1.0] * 4, "tokens": [1] * 4,
                                "exact": em}}))
    out = subprocess.run([sys.executable, str(SCRIPTS[0].parent / "pooled_seeds.py"), str(tmp_path / "a"),
                          str(tmp_path / "b"), "--budgets", "0.3", "--selectors", "sel", "--n-boot", "200"],
                         capture_output=True, text=True, check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith("| sel |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:6] == ["sel", "0.3", "33.3", "random", "+8.3 ± 28.9", "2 of 3"]
    half = 100 * 4.3027 * math.sqrt(1 / 12) / math.sqrt(3)
    assert cells[8] == f"[{100 / 12 - half:+.1f}, {100 / 12 + half:+.1f}]"
    # t(0.975, n - 1) / sqrt(n) < mean / std = sqrt(1/12) = 0.2887 first at n = 49 (2.0106 / 7)
    assert cells[9] == "ties (~49 seeds to resolve)"
    assert "seeds [0, 1, 2]" in out


def test_cut_keep_rates_replays_a_per_family_cut_and_counts_by_label(tmp_path, capsys):
    """A hand-worked pool: family A (10 clean in two wordings, 2 wrong), family B (9 clean, 1 wrong,
    1 paraphrase of b0), 2 garbage. No band (budget 1); the cut keeps half of each family, lowest
    ``sig`` first: a0..a5; b9 (a wrong answer the signal misses) and b0..b4; one garbage record."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import load_benchmark_script

    records, sig = [], []
    for k in range(12):
        records.append({"id": f"a{k}", "family": "A", "noise": "clean" if k < 10 else "wrong", "dup_of": None,
                        "instruction": ("Copy: x" if k < 5 else "Repeat: x")})
        sig.append(float(k))
    for k in range(11):
        noise = "clean" if k < 9 else ("wrong" if k == 9 else "near_duplicate")
        records.append({"id": f"b{k}", "family": "B", "noise": noise, "dup_of": "b0" if k == 10 else None,
                        "instruction": "Reverse: x"})
        sig.append({9: -1.0, 10: 99.0}.get(k, float(k)))
    for k in range(2):
        records.append({"id": f"g{k}", "family": "garbage", "noise": "garbage", "dup_of": None,
                        "instruction": "#%&"})
        sig.append(float(k))
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "run").mkdir()
    pq.write_table(pa.table({"id": [r["id"] for r in records], "ppl_5": [1.0] * len(records), "sig": sig}),
                   tmp_path / "run" / "scores.parquet")
    main = load_benchmark_script("cut_keep_rates").main
    assert main([str(tmp_path / "run"), str(pool), "--band", "ppl_5:low:1.0", "--cut", "sig:low",
                 "--budgets", "0.5"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| sig low")][0]
    # clean kept 11 of 19; wrong 1 of 3; 1 wrong of 13 kept; b0 (copied) kept, 10 of the other 18;
    # wording spread in A: Copy 5 of 5, Repeat 1 of 5 (B has one wording)
    assert row == "| sig low | 0.5 | 0.579 | 0.333 | 0.077 | 1.00 / 0.56 | 0.80 |"


def test_error_analysis_aligns_items_and_counts_what_the_wrong_answers_taught():
    from conftest import load_benchmark_script

    ea = load_benchmark_script("error_analysis")
    # add: 7 -> 3 where 8 is right; reverse is aligned backwards; a length miss is None
    assert ea.wrong_items("Add one to each: 5 2 7", "6 3 8", "6 3 3", "add") == [("7", "3")]
    assert ea.wrong_items("Reverse: a b c", "c b a", "c x a", "reverse") == [("b", "x")]
    assert ea.wrong_items("Add one to each: 5 2 7", "6 3 8", "6 3", "add") is None
    assert ea.wrong_items("Largest of 1, 2 or 3", "3", "2", "compare") is None
    # "cold cold" for "cold new" repeats the item before; "2 2" where the reference has "2 2" does not
    assert ea.repeats_previous("cold new", "cold cold") and not ea.repeats_previous("cold new", "cold old")
    assert not ea.repeats_previous("3 2 2", "4 2 2") and ea.repeats_previous("3 2", "3 2 2")
    def rec(family, noise, instruction, output):
        return {"family": family, "noise": noise, "instruction": instruction, "output": output}

    pool = {"w1": rec("add", "wrong", "Add one to each: 5 2 7", "6 3 3"),
            "c1": rec("add", "clean", "Each digit plus 1: 2 0", "3 1"),
            "w2": rec("opposite", "wrong", "Opposite: new up", "old old"),
            "c2": rec("opposite", "clean", "Antonyms of up", "down")}
    # w1 teaches 7 -> 3 (its 5 -> 6 and 2 -> 3 follow the rule); w2 teaches up -> old (new -> old is
    # right); clean records teach nothing
    taught = ea.taught_pairs(pool, ["w1", "c1", "w2", "c2"])
    assert taught == {"add": {("7", "3")}, "opposite": {("up", "old")}}
    assert ea.taught_pairs(pool, ["c1", "c2"]) == {}
    # add's inputs seen here: 5, 2, 7, 0 (4 of them) times 9 wrong digits each
    assert ea.possible_wrong_pairs(pool, "add") == 4 * 9


def test_calibrate_swap_replaces_only_the_labelled_records_in_place():
    """--swap: the paired arm keeps every other record at its position and swaps each wrong answer
    for an unused clean record of the same family, from the candidates when given."""
    from conftest import load_benchmark_script

    calibrate = load_benchmark_script("calibrate_skewed")
    pool = ([{"id": f"a{i}", "family": "a", "noise": "clean"} for i in range(4)]
            + [{"id": "aw", "family": "a", "noise": "wrong"},
               {"id": "ad", "family": "a", "noise": "duplicate"}]
            + [{"id": f"b{i}", "family": "b", "noise": "clean"} for i in range(3)]
            + [{"id": "bw", "family": "b", "noise": "wrong"}])
    drawn = ["a0", "aw", "b0", "bw", "ad"]
    out = calibrate.swap_out(pool, drawn, ("wrong",), seed=0)
    assert [out[i] for i in (0, 2, 4)] == ["a0", "b0", "ad"]  # the rest stays, in place
    assert out[1] in {"a1", "a2", "a3"} and out[3] in {"b1", "b2"}
    assert len(set(out)) == 5
    assert calibrate.swap_out(pool, drawn, ("wrong",), seed=0) == out  # seeded
    # only candidates may come in: a1 is the one unused clean a among them, and b has none left
    with pytest.raises(ValueError, match="no clean b record left"):
        calibrate.swap_out(pool, drawn, ("wrong",), seed=0, candidates={"a0", "a1", "aw", "b0", "bw"})
    only_a = {"a0", "a1", "aw"}
    assert calibrate.swap_out(pool, drawn[:2], ("wrong",), seed=3, candidates=only_a) == ["a0", "a1"]
    # nothing labelled: the draw comes back unchanged
    assert calibrate.swap_out(pool, drawn, ("garbage",), seed=0) == drawn
    # placebo: the wrong answers stay; as many clean records of their families are swapped instead
    placebo = calibrate.swap_out(pool, drawn, ("wrong",), seed=0, placebo=True)
    assert [placebo[i] for i in (1, 3, 4)] == ["aw", "bw", "ad"]
    assert placebo[0] in {"a1", "a2", "a3"} and placebo[2] in {"b1", "b2"}
    with pytest.raises(ValueError, match="no clean a record in the draw"):
        calibrate.swap_out(pool, ["aw", "b0"], ("wrong",), seed=0, placebo=True)


def test_calibrate_arms_of_a_draw():
    """The subsets trained for one draw: --swap adds -swapped (and -placebo), --swapped-only leaves
    the drawn arm out, and a random draw keeps its one arm whatever the flags say."""
    import argparse

    from conftest import load_benchmark_script

    calibrate = load_benchmark_script("calibrate_skewed")
    pool = ([{"id": f"a{i}", "family": "a", "noise": "clean"} for i in range(4)]
            + [{"id": "aw", "family": "a", "noise": "wrong"}])
    drawn = ["a0", "a1", "aw"]

    def names(kind, **flags):
        args = argparse.Namespace(**{"swap": [], "placebo": False, "swapped_only": False, **flags})
        return calibrate.arms(pool, drawn, kind, 0, None, args)

    assert names("sqrt") == [("", drawn)]
    swapped = calibrate.swap_out(pool, drawn, ("wrong",), 0)
    placebo = calibrate.swap_out(pool, drawn, ("wrong",), 0, placebo=True)
    assert names("sqrt", swap=["wrong"], placebo=True) == [("", drawn), ("-swapped", swapped),
                                                            ("-placebo", placebo)]
    assert names("sqrt", swap=["wrong"], swapped_only=True) == [("-swapped", swapped)]
    assert names("random", swap=["wrong"], placebo=True, swapped_only=True) == [("", drawn)]
    with pytest.raises(SystemExit):
        calibrate.main(["--placebo"])
