"""A selector reads a column derived from ``ppl_epoch`` (``ppl_1``, ``lp_app_2``, ``confidence``) in any
run with ``ppl_epoch``: ``select`` derives it (``signals.lp.derived_column``) when the run does not
store it."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from report_run import build_run

import proxysel
from proxysel.errors import UsageError
from proxysel.signals.cartography import confidence
from proxysel.signals.lp import lp_app
from proxysel.store import Run


def _kept(folder):
    table = pq.read_table(folder / "selection.parquet").to_pydict()
    return {i for i, kept in zip(table["id"], table["selected"]) if kept}


def test_per_epoch_columns_are_derived_from_ppl_epoch(tmp_path):
    r = build_run(tmp_path / "r", n=60, selections=False)  # ppl_epoch holds P_0..P_3
    with Run.open(r.run, create=False) as run:
        assert "ppl_1" not in run.score_columns()
        ids, ppl = run.score_matrix("ppl_epoch")
    ids = np.asarray(ids)
    known = ~np.isnan(ppl[:, 1])  # truncated rows hold NaN: excluded, never kept
    # the 15 highest P_1, and the 15 lowest LP_app(2), by an independent sort
    highest = set(ids[known][np.argsort(-ppl[known, 1])[:15]])
    lowest = set(ids[known][np.argsort(lp_app(ppl, 2)[known])[:15]])
    # the 15 most confident: the highest mean of 1 / P_e over epochs 1..3, computed here by hand
    mean_prob = (1 / ppl[:, 1] + 1 / ppl[:, 2] + 1 / ppl[:, 3]) / 3
    confident = set(ids[known][np.argsort(-mean_prob[known])[:15]])
    assert not np.isclose(confidence(ppl)[known], 1 / ppl[known, 3]).all()  # not the last epoch's
    assert _kept(proxysel.select(r.run, method="top", budget=15, signal="ppl_1", order="high",
                                 name="p1")) == highest
    assert _kept(proxysel.select(r.run, method="top", budget=15, signal="lp_app_2", order="low",
                                 name="a2")) == lowest
    assert _kept(proxysel.select(r.run, method="top", budget=15, signal="confidence", order="high",
                                 name="c")) == confident
    with pytest.raises(UsageError, match="top reads 'ppl_7': ppl_epoch holds P_0..P_3, not P_7"):
        proxysel.select(r.run, method="top", budget=15, signal="ppl_7", order="low", name="p7")


def test_a_run_without_ppl_epoch_names_train_proxy(tmp_path):
    from report_run import scores_table, write_pool

    from proxysel.data import read_pool

    data = tmp_path / "pool.jsonl"
    ids = write_pool(data, 30, 0)
    pool = read_pool(data)
    with Run.open(tmp_path / "run") as run:
        run.update_manifest(data={"path": str(data), "fingerprint": pool.fingerprint, "n_examples": 30,
                                  "files": pool.paths})
        run.merge_scores(scores_table(ids).drop_columns(["ppl_epoch"]))
    with pytest.raises(UsageError, match="top reads 'ppl_2'.*proxysel train-proxy"):
        proxysel.select(tmp_path / "run", method="top", budget=10, signal="ppl_2", order="low", name="p2")


def test_the_registry_derives_the_per_epoch_columns_from_ppl_epoch(tmp_path):
    from proxysel.config import ConfigError, config_from_dict
    from proxysel.pipeline import preflight
    from proxysel.signals import derivable, producer_of

    assert producer_of("ppl_5").name == producer_of("lp_app_2").name == producer_of("ppl_epoch").name
    assert producer_of("confidence").name == producer_of("variability").name == "ppl_epoch"
    assert producer_of("ppl").name == "loss" and producer_of("ppl_x") is None
    assert derivable("ppl_5", {"id", "ppl_epoch"}) and not derivable("ppl_5", {"id", "ppl"})
    assert not derivable("ppl_epoch", {"ppl_epoch"})  # stored, not derived
    data = tmp_path / "pool.jsonl"
    data.write_text("")
    band = {"method": "top", "signal": "ppl_5", "order": "low", "budget": 0.95}
    # a run config whose train_proxy section writes ppl_epoch may select on ppl_5 ...
    preflight(config_from_dict({"out": str(tmp_path / "a"), "data": {"path": str(data)},
                                "train_proxy": {"epochs": 6}, "select": [band]}), tmp_path / "a")
    # ... one without is refused before any work, naming the section that makes it
    with pytest.raises(ConfigError, match="top reads 'ppl_5'.*add a train_proxy section"):
        preflight(config_from_dict({"out": str(tmp_path / "b"), "data": {"path": str(data)},
                                    "score": {"signals": ["loss"]}, "select": [band]}), tmp_path / "b")
