"""`proxysel run` end to end on tiny random-init models: which steps run after which change.

One run is computed per module; each test works on a copy of it, changes one thing and checks,
from the manifest (the pipeline's step records and the stages' own ``shards_computed``,
``started``), that exactly the changed step and the steps after it did work.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from conftest import build_tiny_model, write_qa_pool  # noqa: E402
from proxysel import api  # noqa: E402
from proxysel.cli.main import main  # noqa: E402
from proxysel.config import load_config  # noqa: E402

ALL = ["train-proxy", "score", "select:lp", "select:s2l", "report"]


def _config(pool: Path, model: Path) -> str:
    return f"""\
# a tiny pipeline: LP_app (global cut) and S2L on a random-init model
out: unused
data: {{path: {pool}}}
runtime: {{shard_size: 16}}
train_proxy: {{model: {model}, epochs: 2, checkpoints: 3, batch_size: 2, grad_accum: 4, lr: 1e-2, max_length: 64}}
score: {{signals: [loss], model: {model}, max_length: 64}}
select:
  - {{name: lp, method: lp_app, budget: 0.3, within_clusters: false}}
  - {{name: s2l, method: s2l, budget: 10, clusters: 3}}
"""  # noqa: E501  (a config file as a user writes it)


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_model_dir):
    d = tmp_path_factory.mktemp("run")
    pool = write_qa_pool(d / "pool.jsonl", 40, long_every=10)
    cfg = d / "tiny.yaml"
    cfg.write_text(_config(pool, tiny_model_dir), encoding="utf-8")
    run = d / "first"
    assert main(["-q", "run", str(cfg), f"out={run}"]) == 0
    return cfg, run


@pytest.fixture
def run_copy(base, tmp_path):
    cfg, run = base
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return cfg, copy


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def _ran(run: Path) -> list[str]:
    return _manifest(run)["pipeline"]["last"]["ran"]


def _stage(run: Path, name: str) -> dict:
    return _manifest(run)["stages"][name]


def test_first_run_writes_everything_and_the_resolved_config(base, capsys):
    cfg, run = base
    m = _manifest(run)
    assert m["pipeline"]["last"]["ran"] == ALL
    assert m["pipeline"]["steps"]["train-proxy"]["computed"] == ["train-proxy"]
    assert m["pipeline"]["steps"]["score"]["computed"] == ["loss"]
    assert (run / "report.html").exists()
    for name in ("lp", "s2l"):
        assert (run / "selections" / name / "selected.jsonl").exists()
    saved = load_config(run / "config.yaml")
    assert saved == load_config(cfg, [f"out={run}"])  # resolved config, loadable as it is
    assert m["pipeline"]["config"]["select"][0]["name"] == "lp"
    logs = list((run / "logs").glob("*-run.log"))
    assert len(logs) == 1 and "step report: ran" in logs[0].read_text()


def test_rerun_is_a_noop(run_copy, capsys):
    cfg, run = run_copy
    started = _stage(run, "train-proxy")["started"]
    sel = run / "selections" / "lp" / "selection.parquet"
    mtime = sel.stat().st_mtime_ns
    # runtime.device changes where the work runs, not its results: still nothing to do
    assert main(["run", str(cfg), f"out={run}", "runtime.device=cpu"]) == 0
    out = capsys.readouterr().out
    assert _ran(run) == []
    assert out.count("up to date") == len(ALL) and "report: " in out
    assert _stage(run, "loss")["shards_computed"] == 0  # called, resumed, nothing recomputed
    assert _stage(run, "train-proxy")["started"] == started
    assert sel.stat().st_mtime_ns == mtime


def test_budget_change_reruns_only_that_selection_and_the_report(run_copy):
    cfg, run = run_copy
    started = _stage(run, "train-proxy")["started"]
    s2l_mtime = (run / "selections" / "s2l" / "selection.parquet").stat().st_mtime_ns
    assert main(["-q", "run", str(cfg), f"out={run}", "select.lp.budget=0.5"]) == 0
    assert _ran(run) == ["select:lp", "report"]
    meta = json.loads((run / "selections" / "lp" / "meta.json").read_text())
    assert meta["budget"] == 0.5 and meta["n_selected"] == 20
    assert _stage(run, "train-proxy")["started"] == started and _stage(run, "loss")["shards_computed"] == 0
    assert (run / "selections" / "s2l" / "selection.parquet").stat().st_mtime_ns == s2l_mtime
    assert load_config(run / "config.yaml").select[0].budget == 0.5


def test_model_change_reruns_the_proxy_stage_then_selections_and_report(run_copy, tmp_path):
    cfg, run = run_copy
    other = build_tiny_model(tmp_path / "other-model", seed=1)
    before = _manifest(run)["stages"]["train-proxy"]["fingerprint"]
    assert main(["-q", "run", str(cfg), f"out={run}", f"train_proxy.model={other}"]) == 0
    m = _manifest(run)
    assert _ran(run) == ["train-proxy", "select:lp", "select:s2l", "report"]
    assert m["pipeline"]["steps"]["train-proxy"]["computed"] == ["train-proxy"]
    assert m["stages"]["train-proxy"]["fingerprint"]["model"] == str(other) != before["model"]
    assert m["stages"]["loss"]["shards_computed"] == 0  # the score step was not touched
    assert "train_proxy.model" in m["pipeline"]["steps"]["train-proxy"]["why"]


def test_score_change_reruns_score_not_training(run_copy):
    cfg, run = run_copy
    started = _stage(run, "train-proxy")["started"]
    assert main(["-q", "run", str(cfg), f"out={run}", "score.max_length=48"]) == 0
    assert _ran(run) == ["score", "select:lp", "select:s2l", "report"]
    assert _stage(run, "loss")["shards_computed"] == 3 and _stage(run, "train-proxy")["started"] == started


def test_a_failed_attempt_is_replaced_by_the_next_run(run_copy, tmp_path, capsys):
    cfg, run = run_copy
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    try:  # an unloadable model is "anything else": exit code 1 or the exception itself
        assert main(["-q", "run", str(cfg), f"out={run}", f"score.model={broken}"]) != 0
    except Exception:
        pass
    capsys.readouterr()
    assert _manifest(run)["pipeline"]["steps"]["score"]["attempt"]["score"]["model"] == str(broken)
    # The loss stage now belongs to the failed config; the original config takes it back.
    assert main(["-q", "run", str(cfg), f"out={run}"]) == 0
    assert "score" in _ran(run) and _stage(run, "loss")["fingerprint"]["model"] != str(broken)


def test_preflight_refuses_before_any_work(base, tmp_path, capsys):
    cfg, _ = base
    out = tmp_path / "never"
    assert main(["-q", "run", str(cfg), f"out={out}", "train_proxy=null"]) == 2
    err = capsys.readouterr().err
    assert "select.0.method" in err and "lp_app" in err and "train_proxy" in err
    assert not out.exists()


def test_api_run_takes_a_config_object_and_overrides(run_copy):
    cfg, run = run_copy
    config = load_config(cfg, [f"out={run}"])
    assert api.run(config, ["select.s2l.seed=1"]) == run
    assert _ran(run) == ["select:s2l", "report"]
    assert load_config(run / "config.yaml").select[1].seed == 1
