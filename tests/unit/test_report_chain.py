"""The report and `explain` on a chain of selections (`select --from`) and on a signal that does not
apply to every record (a stage's ``not_applicable`` manifest entry)."""

from __future__ import annotations

import html
import json
import re

import pyarrow.parquet as pq
import pytest
from report_run import build_run

import proxysel
from proxysel.cli.main import main
from proxysel.reporting.html import not_applicable
from proxysel.reporting.load import load_run
from proxysel.store import Run

N = 100
#: What the chain below is, worked by hand: `top loss middle 0.9` keeps 90 of the 100 rows (the
#: 5 truncated rows have no loss and are excluded); `random 0.3` then keeps 30 of those 90 (the
#: budget is a share of the whole pool), so 10 rows were dropped at step 1 and 60 by the random draw.
CHAIN = "top loss middle 0.9 (90 kept) -> random 0.3 (30 kept)"
STEP_1 = "dropped at step 1 (top loss middle 0.9)"


def _section(page: str, key: str) -> str:
    return page.split(f'<section id="{key}">')[1].split("</section>")[0]


@pytest.fixture(scope="module")
def chained(tmp_path_factory):
    """A synthetic run with two selections made by `proxysel select`: ``mid`` from the whole pool and
    the second one ``--from mid``; returns (run folder, the second selection's name)."""
    r = build_run(tmp_path_factory.mktemp("chain") / "r", n=N, selections=False)
    assert main(["-q", "select", str(r.run), "--method", "top", "--signal", "loss", "--order", "middle",
                 "--budget", "0.9", "--name", "mid"]) == 0
    assert main(["-q", "select", str(r.run), "--method", "random", "--budget", "0.3", "--from", "mid"]) == 0
    (second,) = [p.name for p in (r.run / "selections").iterdir() if p.name != "mid"]
    return r.run, second


def _rows(run, name):
    table = pq.read_table(run / "selections" / name / "selection.parquet")
    return {row["id"]: row for row in table.to_pylist()}


def test_the_chain_as_select_wrote_it(chained):
    """The premise, from the files: 90 then 30 kept, and the 10 rows mid dropped say so in the child."""
    run, second = chained
    mid, child = _rows(run, "mid"), _rows(run, second)
    assert sum(r["selected"] for r in mid.values()) == 90 and sum(r["selected"] for r in child.values()) == 30
    dropped_by_mid = {i for i, r in mid.items() if not r["selected"]}
    assert len(dropped_by_mid) == 10
    assert {i for i, r in child.items() if r["reason"] == STEP_1} == dropped_by_mid
    assert all(mid[i]["selected"] for i, r in child.items() if r["selected"])


def test_report_shows_the_chain_and_the_outcome_of_each_step(chained):
    run, second = chained
    page = proxysel.report(run, read_data=False).read_text(encoding="utf-8")
    sel = _section(page, "selection")
    assert f"<dt>chain</dt><dd>{html.escape(CHAIN)}</dd>" in sel
    outcome = {re.sub(r"<[^>]+>", "", cells[0]).split(" ", 1)[1]: int(cells[1].replace(",", ""))
               for cells in (re.findall(r"<td[^>]*>(.*?)</td>", row) for row in sel.split("<tr")[1:])
               if len(cells) == 3}
    assert outcome == {"kept": 30, html.escape(STEP_1): 10, "dropped by the selection rule": 60}
    # the table of every selection says which one the second started from
    listed = {re.sub(r"<[^>]+>", "", cells[0]): re.sub(r"<[^>]+>", "", cells[4])
              for cells in (re.findall(r"<td[^>]*>(.*?)</td>", row) for row in sel.split("All selections")[1]
                            .split("<tr")[1:]) if cells}
    assert listed == {second: "mid", "mid": "–"}


def test_report_of_the_first_step_has_no_chain(chained):
    run, _ = chained
    page = proxysel.report(run, selection="mid", read_data=False).read_text(encoding="utf-8")
    assert "<dt>chain</dt>" not in _section(page, "selection")
    assert load_run(run, selection="mid", read_data=False).selection.chain is None


def test_explain_prints_the_chain_under_the_selection_header(chained):
    run, second = chained
    child = _rows(run, second)
    dropped = next(i for i, r in child.items() if r["reason"] == STEP_1)
    kept = next(i for i, r in child.items() if r["selected"])
    for example_id in (dropped, kept):
        text = proxysel.explain(run, example_id)
        block = text.split(f"selection '{second}'")[1]
        assert block.splitlines()[1] == f"  chain    {CHAIN}"
        assert f"  reason   {child[example_id]['reason']}\n" in block
        mid_block = text.split("selection 'mid'")[1].split("\nselection '")[0]
        assert "chain" not in mid_block
    assert f"  reason   {STEP_1}\n" in proxysel.explain(run, dropped, selection=second)


def test_not_applicable_helper():
    assert not_applicable({}) is None
    assert not_applicable({"not_applicable": {"count": 0, "reasons": {}}}) is None
    assert not_applicable({"not_applicable": "garbage"}) is None
    count, text = not_applicable({"not_applicable": {"count": 3, "reasons": {"b why": 1, "a why": 2},
                                                     "first_ids": ["x", "y", "z"]}})
    assert count == 3 and text == "a why: 2; b why: 1; first: x, y, z"


def test_stage_table_shows_a_not_applicable_entry(tmp_path):
    """An entry as ``stages.score`` records it, with untrusted text: counted in the stage's row, the
    reasons and first ids in a note under the table, all escaped."""
    r = build_run(tmp_path / "na", n=40, selections=False, embeddings=False)
    with Run.open(r.run, create=False) as run:
        na = {"count": 7, "reasons": {"text record has no prompt <b>": 7}, "first_ids": ["t<1>", "t2"]}
        run.record_stage("ifd", {"fingerprint": {"model": "smollm2-135m"}, "status": "complete",
                                 "seconds": 3.0, "examples": 40, "not_applicable": na})
    text = proxysel.report(r.run, read_data=False).read_text(encoding="utf-8")
    stages = _section(text, "stages")
    row = next(x for x in stages.split("<tr") if "ifd</span>" in x)
    assert "<small>not applicable to 7 of 40 examples</small>" in row
    assert ("<li>ifd does not apply to 7 of 40 examples (text record has no prompt &lt;b&gt;: 7; first: "
            "t&lt;1&gt;, t2): they hold NaN for it, and selections by it leave them out.</li>") in stages
    assert "train-proxy" in stages and stages.count("not applicable") == 1  # only the stage that has one


def test_not_applicable_from_a_real_score(tmp_path, tiny_model_dir):
    """`proxysel score --signals ifd` on a pool with plain-text records: the report counts the text
    records (counted here from the input file) as the ones IFD does not apply to."""
    pytest.importorskip("torch")
    from conftest import write_jsonl

    records = [{"id": f"q{i}", "instruction": f"say {i} twice", "output": f"{i} {i}"} for i in range(6)]
    records += [{"id": f"t{i}", "text": f"plain text number {i}"} for i in range(3)]
    data = write_jsonl(tmp_path / "mixed.jsonl", records)
    run = tmp_path / "run"
    proxysel.score(data, out=run, signals="ifd", model=str(tiny_model_dir), max_length=48, shard_size=4)
    entry = json.loads((run / "manifest.json").read_text())["stages"]["ifd"]["not_applicable"]
    n_text = sum("text" in r for r in records)
    assert entry["count"] == n_text
    page = proxysel.report(run, read_data=False).read_text(encoding="utf-8")
    stages = _section(page, "stages")
    assert f"not applicable to {n_text} of {len(records)} examples" in stages
    (reason,) = entry["reasons"]
    assert f"({html.escape(reason)}: {n_text}; first: t0, t1, t2)" in stages
