"""`proxysel select --from`: a chain of selections records each step once, and every row an
earlier step dropped names that step by its number."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from report_run import build_run

import proxysel
from proxysel.errors import UsageError


def _table(folder):
    return {r["id"]: r for r in pq.read_table(folder / "selection.parquet").to_pylist()}


def test_three_steps(tmp_path):
    r = build_run(tmp_path / "r", n=100, selections=False)
    a = proxysel.select(r.run, method="top", budget=0.9, signal="loss", order="middle", name="a")
    b = proxysel.select(r.run, method="random", budget=0.5, seed=1, name="b", parent="a")
    c = proxysel.select(r.run, method="random", budget=0.2, seed=2, name="c", parent="b")
    meta = {f.name: json.loads((f / "meta.json").read_text()) for f in (a, b, c)}
    assert [s["name"] for s in meta["a"]["chain"]] == ["a"]
    assert [s["name"] for s in meta["b"]["chain"]] == ["a", "b"]
    assert [(s["name"], s["n_kept"]) for s in meta["c"]["chain"]] == [("a", 90), ("b", 50), ("c", 20)]
    ta, tb, tc = _table(a), _table(b), _table(c)
    dropped_a = {i for i, x in ta.items() if not x["selected"]}
    dropped_b = {i for i, x in tb.items() if not x["selected"]} - dropped_a
    assert (len(dropped_a), len(dropped_b)) == (10, 40)
    assert {i for i, x in tc.items() if x["reason"] == "dropped at step 1 (top loss middle 0.9)"} == dropped_a
    assert {i for i, x in tc.items() if x["reason"] == "dropped at step 2 (random 0.5)"} == dropped_b
    kept_c = {i for i, x in tc.items() if x["selected"]}
    assert len(kept_c) == 20 and kept_c <= {i for i, x in tb.items() if x["selected"]}


def test_a_step_of_the_parent_cannot_be_the_child(tmp_path):
    r = build_run(tmp_path / "r", n=40, selections=False)
    proxysel.select(r.run, method="random", budget=0.5, name="a")
    proxysel.select(r.run, method="random", budget=0.25, name="b", parent="a")
    with pytest.raises(UsageError, match="a cycle"):
        proxysel.select(r.run, method="random", budget=0.1, name="a", parent="b", overwrite=True)


def test_a_threshold_step_keeps_what_passes_of_the_parent(tmp_path):
    r = build_run(tmp_path / "r", n=60, selections=False)
    a = proxysel.select(r.run, method="random", budget=0.5, seed=3, name="a")
    kept_a = {i for i, x in _table(a).items() if x["selected"]}
    loss = {i: x for i, x in zip(*[pq.read_table(r.run / "scores.parquet").column(c).to_pylist()
                                   for c in ("id", "loss")])}
    cut = sorted(loss[i] for i in kept_a)[10]  # 10 of the parent's 30 lie below it
    with pytest.raises(UsageError, match="budget 60 is larger than the 30 examples 'a' kept"):
        proxysel.select(r.run, method="top", budget=1.0, signal="loss", order="high", at_least=cut,
                        name="b", parent="a")
    b = proxysel.select(r.run, method="top", budget=1.0, signal="loss", order="high", at_least=cut,
                        on_short="keep", name="b", parent="a")
    kept_b = {i for i, x in _table(b).items() if x["selected"]}
    assert kept_b == {i for i in kept_a if loss[i] >= cut} and len(kept_b) == 20
