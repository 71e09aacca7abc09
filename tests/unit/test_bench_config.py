"""The bench config: presets validate, bad fields are named, the CLI exits with 2."""

from __future__ import annotations

import pytest

from proxysel.benchmarking.config import load_bench_config
from proxysel.benchmarking.presets import PRESETS
from proxysel.config import ConfigError
from proxysel.errors import UsageError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_config(name):
    cfg = load_bench_config(preset=name)
    assert cfg.out == f"runs/bench-{name}"
    assert cfg.selectors and cfg.budgets and cfg.seeds


def test_file_sections_merge_over_the_preset_and_overrides_are_typed(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("target: {epochs: 7}\nseeds: [5]\n")
    cfg = load_bench_config(path, preset="tiny", overrides=["budgets=[0.2,0.4]", "match=steps"])
    assert cfg.target.epochs == 7 and cfg.target.lr == PRESETS["tiny"]["target"]["lr"]  # merged, not replaced
    assert cfg.seeds == (5,) and cfg.budgets == (0.2, 0.4) and cfg.match == "steps"
    assert cfg.out == "runs/bench-tiny"


@pytest.mark.parametrize("yaml_text, field, words", [
    ("budgets: [1.5]", "budgets", "(0, 1)"),
    ("budgets: [0.1, 0.1]", "budgets", "repeats"),
    ("seeds: []", "seeds", "distinct"),
    ("target: {epochs: 0}", "target.epochs", ">= 1"),
    ("target: {lr: fast}", "target.lr", "number"),
    ("selectors: [{method: lp_appp}]", "selectors.method", "did you mean 'lp_app'"),
    ("selectors: [{method: random}]", "selectors.method", "baseline"),
    ("selectors: [{method: s2l, name: base}]", "selectors.name", "reserved"),
    ("selectors: [{method: s2l}, {method: s2l}]", "selectors", "distinct name"),
    ("match: compute", "match", "epochs, steps"),
    ("data: {kind: files}", "data.pool", "data.pool and data.eval"),
    ("winrate: {endpoint: 'http://localhost:8000/v1'}", "winrate.model", "model name"),
    ("winrate: {endpoint: 'localhost:8000/v1', model: m}", "winrate.endpoint", "http://"),
    ("winrate: {model: gpt-4o}", "winrate.model", "only to an endpoint"),
    ("winrate: {n: 0}", "winrate.n", ">= 1"),
    ("winrate: {enable: true}", "winrate.enable", "did you mean 'enabled'"),
    ("data: {noise: {wrong: 0.6, garbage: 0.5}}", "data.noise.wrong", "nothing clean"),
    ("data: {kind: skewed, noise: {near_duplicate: 0.6, wrong: 0.5}}", "data.noise.wrong", "nothing clean"),
    ("data: {noise: {near_duplicate: 0.1}}", "data.noise.near_duplicate", "only the skewed pool"),
    ("data: {kind: skewed, n_eval: 0}", "data.n_eval", ">= 1"),
    ("proxy: {checkpoints: 0}\nselectors: [{method: s2l}]", "proxy.checkpoints", "trajectory"),
    ("target: {scratch: {hidden: 30, heads: 4}}", "target.scratch.heads", "multiple"),
    ("trget: {epochs: 2}", "trget", "did you mean 'target'"),
])
def test_bad_fields_are_named(tmp_path, yaml_text, field, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text + "\n")
    with pytest.raises(ConfigError) as e:
        load_bench_config(path)
    assert e.value.field == field
    assert words in str(e.value) and str(path) in str(e.value)


def test_a_filtered_or_clustered_random_draw_is_a_recipe(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("selectors:\n"
                    "  - {name: mid, method: top, signal: ppl, order: middle, budget: 0.9}\n"
                    "  - {name: mid-random, method: random, from: mid}\n"
                    "  - {name: quotas, method: random, within_clusters: true, clusters: 4,\n"
                    "     size_power: 0.5}\n")
    cfg = load_bench_config(path, preset="tiny")
    assert [c.name for c in cfg.trained_choices()][-2:] == ["mid-random", "quotas"]  # after the baselines


def test_bad_override_and_unknown_preset():
    with pytest.raises(ConfigError) as e:
        load_bench_config(preset="tiny", overrides=["target.epoch=3"])
    assert e.value.field == "target.epoch" and "did you mean 'epochs'" in str(e.value)
    with pytest.raises(UsageError, match="unknown preset 'tinny'.*did you mean 'tiny'"):
        load_bench_config(preset="tinny")


def test_cli_exits_2_and_names_the_field(tmp_path, capsys):
    from proxysel.cli.main import main

    path = tmp_path / "bad.yaml"
    path.write_text("budgets: [0.1, 2]\n")
    assert main(["-q", "bench", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "config field 'budgets'" in err and "(0, 1)" in err
    assert not (tmp_path / "out").exists()  # nothing written before validation
    assert main(["-q", "bench", "--preset", "tiny", "target.epochs=-1", "--out", str(tmp_path / "o2")]) == 2
    assert "'target.epochs'" in capsys.readouterr().err
    assert main(["-q", "bench"]) == 2


def test_overrides_after_options_reach_the_config(tmp_path, capsys):
    """`bench CONFIG --preset P --out D FIELD=VALUE`: argparse leaves the trailing overrides over."""
    import pytest

    from proxysel.cli.main import main

    path = tmp_path / "ok.yaml"
    path.write_text("seeds: [0]\n")
    out = tmp_path / "out"
    assert main(["-q", "bench", str(path), "--preset", "tiny", "--out", str(out), "seeds=[0,1]",
                 "budgetz=[1]"]) == 2
    assert "config field 'budgetz'" in capsys.readouterr().err  # the override reached the config
    with pytest.raises(SystemExit) as e:  # a word that is no FIELD=VALUE is still refused
        main(["-q", "bench", str(path), "--out", str(out), "stray"])
    assert e.value.code == 2 and "unrecognized arguments: stray" in capsys.readouterr().err


def test_skewed_data_writes_pool_reference_and_eval(tmp_path):
    """The skewed kind's generator parameters reach benchmarking.skewed, and the reference set is
    written next to the pool and eval sets."""
    import collections
    import json

    from proxysel.benchmarking.datasets import prepare_data
    from proxysel.benchmarking.skewed import FAMILIES

    cfg = load_bench_config({"data": {"kind": "skewed", "n_pool": 300, "n_eval": 60, "n_reference": 30,
                                      "noise": {"garbage": 0.1}}})
    paths = prepare_data(cfg.data, tmp_path)
    read = {p.stem: [json.loads(x) for x in p.read_text().splitlines()]
            for p in (paths.pool, paths.eval, paths.reference)}
    assert len(read["pool"]) == 300 and sum(r["noise"] == "garbage" for r in read["pool"]) == 30
    assert collections.Counter(r["family"] for r in read["eval"]) == dict.fromkeys(FAMILIES, 6)
    assert collections.Counter(r["family"] for r in read["reference"]) == dict.fromkeys(FAMILIES, 3)
    again = prepare_data(cfg.data, tmp_path / "again")
    assert again.pool.read_text() == paths.pool.read_text()  # the same config, the same records
    with pytest.raises(ConfigError, match="multiple of the skewed pool's 10 families"):
        prepare_data(load_bench_config({"data": {"kind": "skewed", "n_eval": 55}}).data, tmp_path / "odd")
