"""Filter, then select: ``select --from NAME`` and ``from: NAME`` start a selection from another one's kept
set (issue 14). The budget stays a fraction of the whole pool; rows an earlier step dropped say so."""

from __future__ import annotations

import json

import pytest

from proxysel.cli.main import main
from proxysel.config import ConfigError, config_from_dict
from proxysel.store import RunFolder


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_model_dir):
    d = tmp_path_factory.mktemp("chain")
    recs = [{"id": f"ex{i:02d}", "instruction": f"Sort the numbers {i} {i % 7} 2",
             "output": f"1 2 {i} " * (1 + i % 5)} for i in range(40)]
    pool = d / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in recs))
    run = d / "run"
    assert main(["-q", "score", str(pool), "--signals", "loss", "--model", str(tiny_model_dir),
                 "--out", str(run)]) == 0
    return pool, run


def select(run, *args) -> int:
    return main(["-q", "select", str(run), *map(str, args)])


def test_kept_is_a_subset_of_the_parent_and_the_budget_is_of_the_whole_pool(scored):
    _, run = scored
    assert select(run, "--method", "top", "--signal", "loss", "--order", "middle", "--budget", "0.9",
                  "--name", "mid") == 0
    assert select(run, "--method", "random", "--budget", "0.25", "--from", "mid", "--name", "r") == 0
    folder = RunFolder(run)
    parent, child = set(folder.selection_ids("mid")), set(folder.selection_ids("r"))
    assert len(parent) == 36 and len(child) == 10  # 0.9 x 40 and 0.25 x 40, not 0.25 x 36
    assert child <= parent
    sel = folder.read_selection("r")
    reasons = dict(zip(sel.table.column("id").to_pylist(), sel.table.column("reason").to_pylist()))
    dropped_first = [i for i in reasons if i not in parent]
    assert dropped_first and all(reasons[i] == "dropped at step 1 (top loss middle 0.9)"
                                 for i in dropped_first)
    assert [s["name"] for s in sel.meta["chain"]] == ["mid", "r"] and sel.meta["parent"] == "mid"
    # a chain of chains keeps the earliest step's reason
    assert select(run, "--method", "top", "--signal", "loss", "--budget", "0.1", "--from", "r",
                  "--name", "t") == 0
    third = RunFolder(run).read_selection("t")
    why = dict(zip(third.table.column("id").to_pylist(), third.table.column("reason").to_pylist()))
    assert all(why[i].startswith("dropped at step 1") for i in dropped_first)
    assert all(why[i] == "dropped at step 2 (random 0.25)" for i in parent - child)
    assert set(RunFolder(run).selection_ids("t")) <= child


def test_a_budget_above_the_parents_kept_set_is_a_clear_error(scored, capsys):
    _, run = scored
    assert select(run, "--method", "top", "--signal", "loss", "--budget", "5", "--name", "five") == 0
    assert select(run, "--method", "random", "--budget", "6", "--from", "five") == 2
    assert "larger than the 5 examples 'five' kept" in capsys.readouterr().err


def test_missing_parent_and_self_are_errors(scored, capsys):
    _, run = scored
    assert select(run, "--method", "random", "--budget", "3", "--from", "nope") == 2
    assert "--from nope" in capsys.readouterr().err
    assert select(run, "--method", "random", "--budget", "3", "--from", "same", "--name", "same") == 2
    assert "cannot start from itself" in capsys.readouterr().err


@pytest.mark.parametrize("select_cfg, field, words", [
    ([{"method": "random", "budget": 3, "from": "nope"}], "select.from", "not one of the selections"),
    ([{"method": "random", "budget": 3, "name": "a", "from": "b"},
      {"method": "random", "budget": 3, "name": "b", "from": "a"}], "select.0.from", "cycle"),
])
def test_config_chain_errors_name_the_field(select_cfg, field, words):
    with pytest.raises(ConfigError) as e:
        config_from_dict({"data": {"demo": 5}, "score": {}, "select": select_cfg})
    assert e.value.field == field and words in str(e.value)


def test_run_selects_a_parent_before_the_selections_that_read_it(scored, tmp_path, tiny_model_dir):
    pool, _ = scored
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {tmp_path / 'r'}\ndata: {{path: {pool}}}\n"
                   f"score: {{signals: [loss], model: {tiny_model_dir}}}\n"
                   "select:\n  - {method: random, budget: 0.2, from: mid, name: pick}\n"
                   "  - {method: top, signal: loss, order: middle, budget: 0.5, name: mid}\n"
                   "report: {enabled: false}\n")
    assert main(["-q", "run", str(cfg)]) == 0
    folder = RunFolder(tmp_path / "r")
    assert set(folder.selection_ids("pick")) <= set(folder.selection_ids("mid")) and \
        len(folder.selection_ids("pick")) == 8
    manifest = folder.manifest["pipeline"]["last"]
    assert manifest["ran"].index("select:mid") < manifest["ran"].index("select:pick")
    # changing the parent reruns the child
    assert main(["-q", "run", str(cfg), "select.mid.budget=0.6"]) == 0
    assert RunFolder(tmp_path / "r").manifest["pipeline"]["last"]["ran"] == ["select:mid", "select:pick"]


def test_near_duplicates_first_then_a_random_draw(tmp_path, capsys):
    """A model-free chain through `proxysel run`: the near_dup signal with its config section, `top` on
    dup_rank keeping one record per group, then random; explain names the step that dropped a repeat."""
    recs = []
    for i in range(30):
        letters = " ".join("abcdefghij"[(i + k) % 10] for k in range(3 + i % 5))
        recs.append({"id": f"r{i:02d}", "instruction": f"Reverse the letters: {letters} ({i})",
                     "output": letters[::-1]})
    recs += [{**recs[i], "id": f"copy{i}"} for i in (3, 7, 11, 19)]  # exact repeats, later in the pool
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in recs))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {tmp_path / 'r'}\ndata: {{path: {pool}}}\n"
                   "score: {signals: [near_dup], near_dup: {threshold: 0.9}}\n"
                   "select:\n  - {method: top, signal: dup_rank, order: low, budget: 30, name: dedup}\n"
                   "  - {method: random, budget: 20, from: dedup, name: pick}\n"
                   "report: {enabled: false}\n")
    assert main(["-q", "run", str(cfg)]) == 0
    folder = RunFolder(tmp_path / "r")
    assert folder.manifest["stages"]["near_dup"]["params"]["threshold"] == 0.9
    assert folder.manifest["stages"]["near_dup"]["groups"] == 30
    kept = set(folder.selection_ids("dedup"))
    assert kept == {r["id"] for r in recs[:30]}  # the first of every group, in pool order
    assert set(folder.selection_ids("pick")) <= kept and len(folder.selection_ids("pick")) == 20
    capsys.readouterr()
    assert main(["explain", str(tmp_path / "r"), "copy7", "--selection", "pick"]) == 0
    assert "dropped at step 1 (top dup_rank low" in capsys.readouterr().out
