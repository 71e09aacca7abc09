"""A selector and a signal defined here, in a test file, registered, then run through `select`, `run` and
`bench tiny` with no other edit: the registries decide everything about their entries (issue 15)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from proxysel.cli.main import main
from proxysel.data.text import response_text
from proxysel.options import option
from proxysel.selectors import register_selector, unregister_selector
from proxysel.selectors.base import RankingParams, RankingSelector
from proxysel.signals import Signal, register_signal, unregister_signal


@dataclass(frozen=True)
class ShortestParams(RankingParams):
    longest: bool = option(False, "test_shortest: keep the longest instead")


class ShortestSelector(RankingSelector):
    """Keep the shortest responses in characters (the test signal), ties in pool order."""

    Params = ShortestParams
    signal = "test_chars"

    def _order(self, values, m, rng):
        return np.argsort(-values if self.longest else values, kind="stable")


class CharsSignal(Signal):
    """The response length in characters: no model needed."""

    columns = ("test_chars",)
    model_option = None
    needs = ("response",)

    def fingerprint(self, pool, upstream):
        return {"data": pool.fingerprint, "shard_size": self.runtime.shard_size}

    def setup(self, device):
        return None

    def compute(self, state, examples, bar):
        bar.update(len(examples))
        return pa.table({"id": [e.id for e in examples],
                         "test_chars": pa.array([float(len(response_text(e))) for e in examples],
                                                pa.float64())})


@pytest.fixture
def plugins():
    register_selector("test_shortest")(ShortestSelector)
    register_signal("test_chars")(CharsSignal)
    yield
    unregister_selector("test_shortest")
    unregister_signal("test_chars")


def pool_file(tmp_path: Path) -> tuple[Path, list[str]]:
    """Six records; response lengths 5, 1, 4, 1, 6, 3: the two shortest are b and d."""
    answers = ["aaaaa", "b", "cccc", "d", "eeeeee", "fff"]
    recs = [{"id": c, "instruction": f"say {c}", "output": a} for c, a in zip("abcdef", answers)]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path, ["b", "d"]


def kept(run: Path, name: str) -> list[str]:
    from proxysel.store import RunFolder

    return RunFolder(run).selection_ids(name)


def test_plugin_selector_and_signal_through_score_and_select(plugins, tmp_path, capsys):
    pool, shortest = pool_file(tmp_path)
    run = tmp_path / "run"
    assert main(["-q", "score", str(pool), "--signals", "test_chars", "--out", str(run)]) == 0
    assert main(["-q", "select", str(run), "--method", "test_shortest", "--budget", "2", "--name", "s"]) == 0
    assert kept(run, "s") == shortest
    # its own parameter is a generated flag, typed by its Params
    assert main(["-q", "select", str(run), "--method", "test_shortest", "--budget", "2", "--longest",
                 "--name", "l"]) == 0
    assert kept(run, "l") == ["a", "e"]


def test_a_missing_plugin_column_names_the_command_that_makes_it(plugins, tmp_path, capsys):
    pool, _ = pool_file(tmp_path)
    run = tmp_path / "run"
    assert main(["-q", "score", str(pool), "--signals", "test_chars", "--out", str(run)]) == 0
    assert main(["-q", "select", str(run), "--method", "test_shortest", "--budget", "2",
                 "--signal", "x"]) == 2
    assert "not of test_shortest" in capsys.readouterr().err


def test_plugin_through_run(plugins, tmp_path):
    pool, shortest = pool_file(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {tmp_path / 'r'}\ndata: {{path: {pool}}}\nscore: {{signals: [test_chars]}}\n"
                   "select: {method: test_shortest, budget: 2, name: s}\nreport: {enabled: false}\n")
    assert main(["-q", "run", str(cfg)]) == 0
    assert kept(tmp_path / "r", "s") == shortest
    # preflight asks the registries: a bad parameter of the plugin is a config error naming the field
    assert main(["-q", "run", str(cfg), "select.longest=maybe"]) == 2


@pytest.mark.slow
def test_plugin_through_bench_tiny(plugins, tmp_path):
    from proxysel import api

    out = api.bench("tiny", out=tmp_path / "bench", seeds=[0], budgets=[0.3],
                    selectors=[{"method": "test_shortest"}], transfer={"enabled": False})
    rows = [json.loads(p.read_text()) for p in (out / "cells").glob("*/result.json")]
    assert {r["selector"] for r in rows} >= {"test_shortest", "random", "full"}
    cell = next(r for r in rows if r["selector"] == "test_shortest")
    assert cell["n_selected"] == round(0.3 * 120)
    assert "test_chars" in pq.read_schema(out / "proxy" / "scores.parquet").names
