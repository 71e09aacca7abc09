"""`bench --preset tiny` with the win rate against full data, judged by a local fake endpoint."""

from __future__ import annotations

import csv
import json

import pytest

pytest.importorskip("torch")

from conftest import fake_judge_server  # noqa: E402
from proxysel.cli.main import main  # noqa: E402

N = 6


def _score(mine: str, theirs: str) -> float:
    """The fake judge prefers the longer answer in either order, so both orders agree."""
    return 1.0 if len(mine) > len(theirs) else 0.0 if len(mine) < len(theirs) else 0.5


def test_win_rate_from_cached_cells_with_an_endpoint_judge(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    # a LoRA target: its adapters' random init must come from the seed, or a cell trained again to
    # answer is another model than the one measured (it was, before add_lora seeded it)
    common = ["-q", "bench", "--preset", "tiny", "--out", str(out), "seeds=[0,1]", "budgets=[0.3]",
              "transfer.enabled=false", "target.lora=true", "target.lr=0.03"]
    assert main(common) == 0  # first without the win rate: the cells keep no answers
    before = {p.name: json.loads((p / "result.json").read_text()) for p in (out / "cells").iterdir()}
    assert not any("answers" in r for r in before.values())

    monkeypatch.setenv("PROXYSEL_TEST_JUDGE_KEY", "sk-bench-secret-42")
    with fake_judge_server() as (url, server):
        wr = ["winrate.enabled=true", f"winrate.endpoint={url}", "winrate.model=fake-judge",
              "winrate.api_key_env=PROXYSEL_TEST_JUDGE_KEY", f"winrate.n={N}", "winrate.max_new_tokens=8"]
        assert main(common + wr) == 0
        judged_cells = [c for c in before if c != "base" and not c.startswith("full")]
        assert len(server.requests) == 2 * N * len(judged_cells)  # both orders of every prompt
        assert main(common + wr) == 0  # a rerun reads every judgment from winrate/
        assert len(server.requests) == 2 * N * len(judged_cells)

    after = {p.name: json.loads((p / "result.json").read_text()) for p in (out / "cells").iterdir()}
    for name, r in after.items():
        # trained again only to answer: the recorded metrics are those of the first run
        assert r["metrics"] == before[name]["metrics"] and r["fingerprint"] == before[name]["fingerprint"]
        if name == "base":
            assert "answers" not in r
        else:
            assert len(r["answers"]["texts"]) == N and r["answers"]["key"]["n"] == N
            # and the model that answered is the one that was measured: training is deterministic
            assert r["answers"]["train_loss_last"] == pytest.approx(r["train_loss_last"], rel=1e-5)

    with open(out / "results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["win_rate"]]
    assert len(rows) == len(judged_cells)
    for row in rows:  # recomputed from the stored answers with the fake judge's rule
        cell = after[f"{row['selector']}-{float(row['budget']):g}-s{row['seed']}"]
        full = after[f"full-s{row['seed']}"]
        expected = sum(_score(a, b) for a, b in zip(cell["answers"]["texts"], full["answers"]["texts"])) / N
        assert float(row["win_rate"]) == pytest.approx(expected)
    assert sorted(json.loads((out / "winrate.json").read_text())) == sorted(judged_cells)
    md = (out / "results.md").read_text()
    assert "win rate vs full %" in md and "judge: fake-judge at http://127.0.0.1" in md
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    for path in out.rglob("*"):  # the key is read from the environment and written nowhere
        if path.is_file() and path.suffix in (".json", ".yaml", ".md", ".csv", ".log", ".jsonl", ""):
            assert b"sk-bench-secret" not in path.read_bytes(), path
