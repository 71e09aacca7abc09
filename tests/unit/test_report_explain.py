"""`proxysel explain RUN ID`: the signals of one example and the reason stored in selection.parquet."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest
from report_run import EVIL_ID, build_run

import proxysel
from proxysel.cli.main import main
from proxysel.errors import UsageError
from proxysel.store import Run


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("explain") / "r", n=120)


def stored(run, name):
    t = pq.read_table(run / "selections" / name / "selection.parquet").to_pylist()
    return {r["id"]: r for r in t}


@pytest.mark.parametrize("example_id", ["ex00000", "ex00005", "ex00042", "ex00119", EVIL_ID])
def test_reason_is_the_one_in_selection_parquet(synthetic, example_id):
    text = proxysel.explain(synthetic.run, example_id)
    for name in synthetic.selections:
        row = stored(synthetic.run, name)[example_id]
        block = text.split(f"selection '{name}'")[1].split("\nselection '")[0]
        assert f"  reason   {row['reason']}\n" in block
        assert ("kept" if row["selected"] else "dropped") in block.splitlines()[1]
        if row["rank"] >= 0:
            assert f"rank {row['rank']:,} of" in block
        if row["cluster"] >= 0:
            assert f"cluster {row['cluster']}" in block


def test_every_signal_is_printed(synthetic):
    text = proxysel.explain(synthetic.run, "ex00042")
    scores = pq.read_table(synthetic.run / "scores.parquet")
    row = scores.filter(scores.column("id").to_numpy(zero_copy_only=False) == "ex00042").to_pylist()[0]
    signals = text.split("signals (scores.parquet):\n")[1].split("\n\n")[0]
    for column in scores.column_names:
        if column != "id":
            assert f"  {column} " in signals, column
    assert f"{row['loss']:.6g}" in signals
    assert "[" in signals  # list columns (ppl_epoch, trajectory) shown whole


def test_truncated_example_says_excluded(synthetic):
    text = proxysel.explain(synthetic.run, "ex00005", selection="lp-30")  # every 23rd from 5 is truncated
    assert re.search(r"^  truncated +True$", text, re.M)
    assert "reason   excluded: truncated" in text  # not "signal is NaN": the NaN comes from the truncation
    assert "selection 'ppl-low'" not in text


def test_cli(synthetic, capsys):
    assert main(["explain", str(synthetic.run), "ex00003", "--selection", "ppl-low"]) == 0
    out = capsys.readouterr().out
    assert (out.startswith("example 'ex00003'")
            and stored(synthetic.run, "ppl-low")["ex00003"]["reason"] in out)


@pytest.mark.parametrize("bad_id", ["nope", "../../etc/passwd", "/etc/passwd", "", "ex00003\x1b[31m"])
def test_unknown_id_exits_2(synthetic, capsys, bad_id):
    assert main(["explain", str(synthetic.run), bad_id]) == 2
    err = capsys.readouterr().err
    assert "no example with id" in err and "\x1b" not in err


def test_unknown_selection_exits_2(synthetic, capsys):
    assert main(["explain", str(synthetic.run), "ex00003", "--selection", "nope"]) == 2
    assert "no selection 'nope'" in capsys.readouterr().err
    with pytest.raises(UsageError):
        proxysel.explain(synthetic.run, "ex00003", selection="../selections")


def test_reads_while_another_process_holds_the_run(synthetic):
    with Run.open(synthetic.run, create=False):
        assert "reason" in proxysel.explain(synthetic.run, "ex00003")


def test_with_a_selection_from_proxysel_select(tmp_path):
    """The report and explain read what `proxysel select` writes (meta.json without a signal key)."""
    from proxysel.reporting.load import load_run

    r = build_run(tmp_path / "real", n=80, selections=False)
    out = proxysel.select(r.run, method="lp", budget=0.25, seed=0)
    view = load_run(r.run)
    assert view.selection.name == out.name and view.selection.signal == "lp"
    page = proxysel.report(r.run).read_text(encoding="utf-8")
    assert f"selection <code>{out.name}</code>" in page and "lp (selection signal)" in page
    rows = stored(r.run, out.name)
    for example_id in r.ids[:12]:
        assert f"  reason   {rows[example_id]['reason']}\n" in proxysel.explain(r.run, example_id, out.name)
