"""The `proxysel run` config: round trip, typed dotted overrides, clear errors (exit code 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxysel.config import (
    ConfigError,
    DataConfig,
    RunConfig,
    ScoreConfig,
    SelectConfig,
    TrainProxyConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
)

REPO = Path(__file__).resolve().parents[2]
BASE = """\
out: runs/x
data: {path: pool.jsonl, limit: 50}
train_proxy: {epochs: 2, lr: 2e-5, checkpoints: 4}
score: {signals: [loss, embedding, density], density: {R: 64}}
select:
  - {method: lp_app, budget: 0.3, clusters: 10}
  - {method: s2l, budget: 100, name: s2l-100, options: {set_aside: 3}}
"""


def _write(tmp_path: Path, text: str = BASE, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_load_types_defaults_and_names(tmp_path):
    cfg = load_config(_write(tmp_path))
    # PyYAML reads 2e-5 as a string
    assert isinstance(cfg.train_proxy.lr, float) and cfg.train_proxy.lr == 2e-5
    assert cfg.score.signals == ("loss", "embedding", "density") and cfg.score.density.R == 64
    assert [s.name for s in cfg.select] == ["lp_app-0.3-s0", "s2l-100"]
    assert cfg.select[1].budget == 100 and isinstance(cfg.select[1].budget, int)
    assert cfg.select[1].params() == {"set_aside": 3}
    assert cfg.report.enabled and cfg.runtime.shard_size == 256


def test_round_trip_yaml_and_dict(tmp_path):
    cfg = load_config(_write(tmp_path), ["train_proxy.model=gemma3-270m"])
    text = dump_config(cfg, header="resolved\nconfig")
    assert text.startswith("# resolved\n# config\n")
    again = load_config(_write(tmp_path, text, "again.yaml"))
    assert again == cfg
    assert config_from_dict(yaml.safe_load(text)) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_one_selection_mapping_equals_a_list_of_one():
    a = config_from_dict({"data": {"demo": 5}, "score": {}, "select": {"method": "random", "budget": 3}})
    b = config_from_dict({"data": {"demo": 5}, "score": {}, "select": [{"method": "random", "budget": 3}]})
    assert a == b and a.select[0].name == "random-3-s0"
    assert a.score == ScoreConfig()


def test_default_out_is_the_config_name(tmp_path):
    cfg = load_config(_write(tmp_path, BASE.replace("out: runs/x\n", ""), "my-exp.yaml"))
    assert cfg.out == str(Path("runs") / "my-exp")


@pytest.mark.parametrize("override, check", [
    ("select.0.budget=0.2", lambda c: c.select[0].budget == 0.2),
    ("select.s2l-100.seed=7", lambda c: c.select[1].seed == 7),
    ("select.0.within_clusters=false", lambda c: c.select[0].within_clusters is False),
    ("select.1.set_aside=4", lambda c: c.select[1].set_aside == 4),
    ("train_proxy.epochs=1", lambda c: c.train_proxy.epochs == 1),
    ("train_proxy.lr=1e-4", lambda c: c.train_proxy.lr == 1e-4),
    ("train_proxy.online=yes", lambda c: c.train_proxy.online is True),
    ("train_proxy.checkpoints=null", lambda c: c.train_proxy.checkpoints is None),
    ("train_proxy=null", lambda c: c.train_proxy is None),
    ("score.signals=loss,ifd", lambda c: c.score.signals == ("loss", "ifd")),
    ("score.signals=[ask_llm]", lambda c: c.score.signals == ("ask_llm",)),
    ("score.density.r=0.5", lambda c: c.score.density.r == 0.5),
    ("data.columns.instruction=question", lambda c: c.data.columns == {"instruction": "question"}),
    ("data.columns={output: answer}", lambda c: c.data.columns == {"output": "answer"}),
    ("runtime.device=cuda:1", lambda c: c.runtime.device == "cuda:1"),
    ("out=elsewhere", lambda c: c.out == "elsewhere"),
    ("report.selection=s2l-100", lambda c: c.report.selection == "s2l-100"),
])
def test_overrides_are_typed_by_their_field(tmp_path, override, check):
    assert check(load_config(_write(tmp_path), [override]))


def test_single_selection_is_addressed_without_index(tmp_path):
    text = BASE.split("select:")[0] + "select: {method: lp_app, budget: 0.3}\n"
    cfg = load_config(_write(tmp_path, text), ["select.budget=0.2", "select.clusters=5"])
    assert (cfg.select[0].budget == 0.2 and cfg.select[0].clusters == 5
            and cfg.select[0].name == "lp_app-0.2-s0")


def test_overrides_can_create_sections():
    raw = apply_overrides({"data": {"demo": 10}}, ["score.signals=embedding", "select.method=density",
                                                   "select.budget=0.5"])
    cfg = config_from_dict(raw)
    assert cfg.score.signals == ("embedding",) and cfg.select[0].method == "density"


def _error(tmp_path, text=BASE, overrides=()) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text), overrides)
    assert e.value.exit_code == 2
    return e.value


@pytest.mark.parametrize("override, field, words", [
    ("select.0.bugdet=0.2", "select.0.bugdet", ["unknown key", "did you mean 'budget'"]),
    ("trian_proxy.epochs=2", "trian_proxy", ["did you mean 'train_proxy'"]),
    ("select.0.method=lpapp", "select.0.method", ["lp_app, s2l", "did you mean 'lp_app'"]),
    ("train_proxy.epochs=x", "train_proxy.epochs", ["must be an integer"]),
    ("train_proxy.epochs=0", "train_proxy.epochs", ["must be >= 1"]),
    ("train_proxy.lp_epoch=3", "train_proxy.lp_epoch", ["[1, epochs=2]"]),
    ("train_proxy.dtype=fp16", "train_proxy.dtype", ["float32, bfloat16"]),
    ("score.signals=loss,embeding", "score.signals", ["did you mean 'embedding'"]),
    ("select.0.budget=0", "select.0.budget", ["fraction in (0, 1] or a count"]),
    ("select.0.budget=lots", "select.0.budget", ["fraction in (0, 1] or a count"]),
    ("select.0.stratify=source", "select.0.stratify", ["option of s2l"]),
    ("select.1.within_clusters=false", "select.1.within_clusters", ["not of s2l"]),
    ("select.0.clusters=0", "select.0.clusters", ["must be >= 1"]),
    ("select.1.from=nope", "select.1.from", ["not one of the selections"]),
    ("select.1.name=a/b", "select.1.name", ["path separator"]),
    ("select.1.name=lp_app-0.3-s0", "select", ["two selections are named"]),
    ("select.budget=0.2", "select.budget", ["select.<index>.budget"]),
    ("select.5.budget=0.2", "select.5", ["only 2 entries in select"]),
    ("data.on_bad_record=ignore", "data.on_bad_record", ["error, skip"]),
    ("data.demo=10", "data.path", ["exactly one of data.path"]),
    ("runtime.device=tpu", "runtime.device", ["cpu, cuda, cuda:N"]),
    ("runtime.ray_actors=2", "runtime.ray_actors", ["runtime.backend: ray"]),
    ("runtime.backend=spark", "runtime.backend", ["local, ray"]),
    ("report.selection=nope", "report.selection", ["not one of the selections"]),
    ("score.density.R=0", "score.density.R", ["must be >= 1"]),
    ("train_proxy.epochs.x=1", "train_proxy.epochs", ["no field"]),
])
def test_errors_name_the_dotted_field_and_what_is_allowed(tmp_path, override, field, words):
    err = _error(tmp_path, overrides=[override])
    assert err.field == field, str(err)
    for w in words:
        assert w in str(err), str(err)


def test_file_errors(tmp_path):
    err = _error(tmp_path, "data: {path: p}\nscore: {}\nselect: {budget: 0.1}\n")
    assert err.field == "select.method" and "required" in str(err)
    assert _error(tmp_path, "data: {path: p}\n").field == "score"  # no proxy stage
    assert _error(tmp_path, "score: {}\n").field == "data"
    err = _error(tmp_path, "data: {path: p}\nscore: {signals: loss}\nextra: 1\n")
    assert err.field == "extra" and "out, data, reference, runtime" in str(err)
    assert _error(tmp_path, "- a\n- b\n").field == ""
    with pytest.raises(Exception) as e:  # YAML syntax: names the file and line
        load_config(_write(tmp_path, "data: {path: p\nscore: [\n"))
    assert "cfg.yaml:" in str(e.value) and e.value.exit_code == 2
    with pytest.raises(Exception) as e:
        load_config(tmp_path / "missing.yaml")
    assert "not found" in str(e.value) and e.value.exit_code == 2


def test_yaml_is_read_safely(tmp_path):
    from proxysel.errors import UsageError

    with pytest.raises(UsageError, match="cfg.yaml:1: not valid YAML"):  # safe_load: no python tags
        load_config(_write(tmp_path, "data: !!python/object/apply:os.system ['echo hi']\n"))


def test_built_in_code_validates_too():
    with pytest.raises(ValueError):
        SelectConfig(method="nope", budget=0.1)
    cfg = RunConfig(out="x", data=DataConfig(demo=3), train_proxy=TrainProxyConfig(epochs=1),
                    select=(SelectConfig(method="lp_app", budget=0.5),))
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_cli_run_bad_config_exits_2(tmp_path, capsys):
    from proxysel.cli.main import main

    cfg = _write(tmp_path)
    assert main(["run", str(cfg), "select.0.method=lpapp"]) == 2
    err = capsys.readouterr().err
    assert "select.0.method" in err and "did you mean 'lp_app'" in err
    assert main(["run", str(cfg), "nonsense"]) == 2
    assert "dotted.field=value" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_and_pass_preflight(path, tmp_path):
    from proxysel.pipeline import preflight

    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), "every shipped config starts with a comment: what it does, how long"
    cfg = load_config(path)
    assert cfg.data.demo is not None, "shipped configs run as they are on the demo data"
    preflight(cfg, tmp_path / "fresh-run")


def test_every_method_has_a_shipped_config():
    methods = {load_config(p).select[0].method for p in (REPO / "configs").glob("*.yaml")}
    assert {"lp", "lp_app", "s2l", "ask_llm", "density", "ifd"} <= methods
