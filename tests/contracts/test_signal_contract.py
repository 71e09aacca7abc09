"""The contract every registered signal keeps, whatever it computes.

Runs over ``available_signals()``: a new signal is checked with no edit here. The declarations are
what the rest of proxysel asks (``--signals``, preflight, the missing-column hint, the applicability
check); the score signals are also computed on a tiny random-init model, and their tables must be
what the stage runner stores.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pytest

from proxysel.data import read_pool
from proxysel.options import RuntimeConfig
from proxysel.signals import available_signals, get_signal, producer_of, score_signals
from proxysel.signals.config import ScoreConfig
from proxysel.store import Run

SIGNALS = available_signals()
SCORE_FIELDS = {f.name for f in dataclasses.fields(ScoreConfig)}


@pytest.mark.parametrize("name", SIGNALS)
def test_declarations(name):
    cls = get_signal(name)
    assert cls.name == name and cls.columns and all(isinstance(c, str) and c for c in cls.columns)
    assert cls.command in ("score", "train-proxy")
    assert set(cls.needs) <= {"prompt", "response"}
    assert set(cls.requires) <= set(SIGNALS) and name not in cls.requires
    assert cls.model_option is None or cls.model_option in SCORE_FIELDS
    assert f"proxysel {cls.command}" in cls.how_to_make("POOL", "RUN")
    assert all(producer_of(c) is not None for c in cls.columns)
    if cls.command == "score":
        assert name in score_signals()
        ScoreConfig(signals=(*cls.requires, name))  # --signals accepts it
    if cls.reference_vectors:
        assert cls.vectors


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    d = tmp_path_factory.mktemp("pools")
    recs = [{"id": f"p{i}", "instruction": f"Sort the numbers {i} 1 2",
             "output": f"The sorted numbers are 1 2 {i}"} for i in range(5)]
    ref = [{"id": f"r{i}", "instruction": f"Name a colour {i}", "output": "Blue is a colour", "family": "c"}
           for i in range(3)]
    (d / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (d / "ref.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ref))
    return read_pool(d / "pool.jsonl"), read_pool(d / "ref.jsonl")


class _Bar:
    def update(self, *args, **kwargs):
        pass


@pytest.mark.parametrize("name", score_signals())
def test_a_score_signal_computes_its_declared_columns(name, pools, tiny_model_dir, tmp_path):
    cls = get_signal(name)
    if not cls.sharded:
        pytest.skip(f"{name} is computed at once from {cls.requires} (tests/unit/test_{name}.py)")
    pool, ref = pools
    config = ScoreConfig(signals=(name,), model=str(tiny_model_dir), judge=str(tiny_model_dir), max_length=64)
    signal = cls(config, RuntimeConfig(), ref if cls.needs_reference else None)
    with Run.open(tmp_path / "run") as run:
        upstream = signal.prepare(run)
        fp = signal.fingerprint(pool, upstream)
        assert json.loads(json.dumps(fp)) == fp and fp == signal.fingerprint(pool, upstream)  # JSON, stable
        table = signal.compute(signal.setup(None), pool.examples, _Bar())
    assert table.column("id").to_pylist() == [e.id for e in pool.examples]
    for column in cls.columns:
        assert column in table.column_names
        if pa.types.is_string(table.column(column).type):
            continue  # a detail column (ask_llm_detail: JSON)
        values = table.column(column).to_pylist()
        flat = np.asarray([v for row in values for v in (row if isinstance(row, list) else [row])],
                          dtype=float)
        assert np.isfinite(flat).all(), column
