"""A shipped config runs as it is (on fewer demo conversations): configs/density.yaml end to end.

It needs no language model (MiniLM embeddings + the LSH density sketch), so it is the one shipped
config cheap enough to run in CI; the others are checked by tests/unit/test_config.py (they load
and pass the pipeline's preflight).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from proxysel.cli.main import main
from proxysel.models.bundled import is_available

pytestmark = [pytest.mark.model,
              pytest.mark.skipif(not is_available("minilm"), reason="minilm not installed")]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_density_config_runs_as_shipped(tmp_path, capsys):
    out = tmp_path / "density"
    assert main(["-q", "run", str(CONFIGS / "density.yaml"), "data.demo=24", f"out={out}"]) == 0
    text = capsys.readouterr().out
    assert "subset density-0.3-s0: 7 of 24 examples" in text
    scores = pq.read_table(out / "scores.parquet").to_pydict()
    density = np.array(scores["density"])
    assert len(density) == 24 and (density >= 1 / 24).all() and (density <= 1).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["density"]["params"] == {"R": 256, "B": 16384, "r": 0.25, "seed": 0}
    assert manifest["pipeline"]["last"]["ran"] == ["score", "select:density-0.3-s0", "report"]

    # another draw reruns only the selection and the report; the sketch is not recomputed
    assert main(["-q", "run", str(CONFIGS / "density.yaml"), "data.demo=24", f"out={out}",
                 "select.seed=1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pipeline"]["last"]["ran"] == ["select:density-0.3-s1", "report"]
    assert manifest["stages"]["density"]["shards_computed"] == 0
    assert manifest["stages"]["embedding"]["shards_computed"] == 0
