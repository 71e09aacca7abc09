"""`proxysel demo` runs offline on real ShareGPT conversations with the bundled SmolLM2."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from proxysel.cli.main import main
from proxysel.models.bundled import is_available

pytestmark = [pytest.mark.model,
              pytest.mark.skipif(not (is_available("smollm2-135m") and is_available("minilm")),
                                 reason="bundled models not installed")]


def test_demo_small(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--limit", "12", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "hardest" in text and "easiest" in text and str(out) in text
    t = pq.read_table(out / "scores.parquet")
    assert t.num_rows == 12
    loss = t.column("loss").to_numpy()
    assert ((loss > 0) & (loss < 10)).all()  # a real pretrained model, not random init (~ln 49152 = 10.8)
