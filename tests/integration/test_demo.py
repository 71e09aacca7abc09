"""`proxysel demo` runs the whole pipeline offline on real ShareGPT conversations with the bundled
SmolLM2 and MiniLM: LP_app training, embeddings, a 30% lp_app selection and the report.

Kept small (--limit 12, --max-length 128) so that it stays well under two minutes on 2 cores;
`make demo` runs the full 300.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from proxysel.cli.main import main
from proxysel.models.bundled import is_available

pytestmark = [pytest.mark.model,
              pytest.mark.skipif(not (is_available("smollm2-135m") and is_available("minilm")),
                                 reason="bundled models not installed")]


def test_demo_small_is_the_whole_pipeline(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--limit", "12", "--max-length", "128", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "hardest" in text and "easiest" in text
    subset = out / "selections" / "lp_app-30" / "selected.jsonl"
    assert f"report: {out / 'report.html'}" in text and str(subset) in text
    assert (out / "report.html").exists() and subset.exists()

    t = pq.read_table(out / "scores.parquet").to_pydict()
    assert len(t["id"]) == 12
    ok = [i for i, tr in enumerate(t["truncated"]) if not tr]
    p0 = np.array([t["ppl_epoch"][i][0] for i in ok])
    # a real pretrained model (~ln 49152 = 10.8 at random)
    assert ((np.log(p0) > 0) & (np.log(p0) < 10)).all()
    lp_app = np.array([t["lp_app"][i] for i in ok])
    assert np.isfinite(lp_app).all() and np.abs(lp_app).max() > 0  # one epoch moved the proxy
    assert (out / "embeddings.parquet").exists()

    meta = json.loads((out / "selections" / "lp_app-30" / "meta.json").read_text())
    assert meta["method"] == "lp_app" and meta["n_selected"] == round(0.3 * 12)
    assert len(subset.read_text().splitlines()) == meta["n_selected"]

    # demo == run on its embedded config: the saved config reruns as a no-op.
    assert main(["-q", "run", str(out / "config.yaml")]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pipeline"]["last"]["ran"] == []
