"""docs/contributing.md's worked examples run as written: its selector and its signal, registered by
the documentation's own code, work through score, select and run."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest

from proxysel.cli.main import main
from proxysel.selectors import unregister_selector
from proxysel.signals import unregister_signal
from proxysel.store import RunFolder

DOC = Path(__file__).resolve().parents[2] / "docs" / "contributing.md"


@pytest.fixture
def documented():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 2, "the selector and the signal examples"
    module = types.ModuleType("contributing_example")  # dataclasses look their module up
    sys.modules[module.__name__] = module
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), module.__dict__)
    yield
    unregister_selector("near_loss")
    unregister_signal("response_words")
    del sys.modules[module.__name__]


def test_the_documented_selector_and_signal_work(documented, tmp_path, tiny_model_dir):
    recs = [{"id": f"e{i}", "instruction": f"Count to {i}", "output": " ".join(["word"] * (i + 1))}
            for i in range(6)]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in recs))
    run = tmp_path / "run"
    assert main(["-q", "score", str(pool), "--signals", "loss,response_words", "--model", str(tiny_model_dir),
                 "--out", str(run)]) == 0
    scores = RunFolder(run).read_scores().to_pydict()
    assert scores["response_words"] == [float(i + 1) for i in range(6)]
    assert main(["-q", "select", str(run), "--method", "near_loss", "--target", "0", "--budget", "2",
                 "--name", "low"]) == 0
    loss = dict(zip(scores["id"], scores["loss"]))
    assert (RunFolder(run).selection_ids("low")
            == sorted(sorted(loss, key=loss.get)[:2], key=scores["id"].index))
    assert main(["-q", "select", str(run), "--method", "top", "--signal", "response_words", "--order", "high",
                 "--budget", "2", "--name", "long"]) == 0
    assert RunFolder(run).selection_ids("long") == ["e4", "e5"]
