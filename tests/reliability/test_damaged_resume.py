"""Verified resumes end to end: a run whose files were damaged after the fact (bytes overwritten in
place, cut short, emptied) is repaired by rerunning the command that made it, and ends with the same
bytes as an undamaged run; `proxysel verify` names the damage first (exit 2) and passes afterwards.

Before verified resumes, a complete `loss` stage whose shard-00000.parquet had 16 bytes overwritten
made every rerun of the same `score` command die with a pyarrow traceback (exit 1).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

import proxysel  # noqa: E402
from conftest import write_qa_pool  # noqa: E402
from harness import assert_same_outputs  # noqa: E402
from proxysel.cli.main import main  # noqa: E402

SCORE = {"shard_size": 8, "max_length": 48}
TRAIN = {"epochs": 2, "checkpoints": 3, "batch_size": 2, "grad_accum": 2, "lr": 1e-2, "max_length": 48,
         "shard_size": 8, "limit": 16}


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "overwrite":  # 16 bytes in place, as a bad disk sector or a stray write would
        path.write_bytes(data[:100] + bytes(16) + data[116:])
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"")


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    return write_qa_pool(tmp_path_factory.mktemp("damage-pool") / "pool.jsonl", 24, seed=3)


@pytest.fixture(scope="module")
def scored(tmp_path_factory, pool, tiny_model_dir) -> Path:
    ref = tmp_path_factory.mktemp("damage-ref") / "run"
    proxysel.score(pool, out=ref, model=str(tiny_model_dir), **SCORE)
    proxysel.select(ref, method="top", budget=0.5, signal="loss", order="low", name="top")
    return ref


def copy(ref: Path, tmp_path: Path) -> Path:
    shutil.copytree(ref, tmp_path / "run")
    return tmp_path / "run"


def verify(run: Path, capsys) -> tuple[int, str]:
    code = main(["-q", "verify", str(run)])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("how", ["overwrite", "truncate", "empty"])
def test_damaged_shard_is_recomputed_to_the_same_bytes(tmp_path, pool, tiny_model_dir, scored, how, caplog,
                                                       capsys):
    run = copy(scored, tmp_path)
    shard = run / "stages" / "loss" / "shard-00000.parquet"
    damage(shard, how)
    code, out = verify(run, capsys)
    assert code == 2 and f"damaged: {shard} " in out

    with caplog.at_level(logging.WARNING):
        proxysel.score(pool, out=run, model=str(tiny_model_dir), **SCORE)
    assert any(str(shard) in r.getMessage() and "computed again" in r.getMessage() for r in caplog.records)
    assert json.loads((run / "manifest.json").read_text())["stages"]["loss"]["shards_computed"] == 1
    assert_same_outputs(run, scored)
    assert verify(run, capsys)[0] == 0


@pytest.mark.parametrize("how", ["overwrite", "truncate", "empty"])
def test_damaged_scores_are_rebuilt_by_the_next_command(tmp_path, pool, tiny_model_dir, scored, how, caplog,
                                                        capsys):
    run = copy(scored, tmp_path)
    damage(run / "scores.parquet", how)
    code, out = verify(run, capsys)
    assert code == 2 and f"damaged: {run / 'scores.parquet'} " in out and "rebuilds it" in out

    # `select` reads the scores: it rebuilds them from the loss stage, then selects the same subset
    with caplog.at_level(logging.WARNING):
        proxysel.select(run, method="top", budget=0.5, signal="loss", order="low", name="top", overwrite=True)
    assert any(str(run / "scores.parquet") in r.getMessage() and "rebuilt" in r.getMessage()
               for r in caplog.records)
    assert_same_outputs(run, scored)
    assert verify(run, capsys)[0] == 0

    # the same through `score` (it merges into the scores, so it reads them first)
    damage(run / "scores.parquet", how)
    proxysel.score(pool, out=run, model=str(tiny_model_dir), **SCORE)
    assert_same_outputs(run, scored)


def test_damaged_selection_is_named(tmp_path, scored, capsys):
    run = copy(scored, tmp_path)
    damage(run / "selections" / "top" / "selected.jsonl", "overwrite")
    code, out = verify(run, capsys)
    assert code == 2 and f"damaged: {run / 'selections' / 'top' / 'selected.jsonl'} " in out
    assert "proxysel select` for selection 'top'" in out


def test_damaged_train_proxy_record_is_scored_again(tmp_path, pool, tiny_model_dir, caplog, capsys):
    """A complete train-proxy stage has dropped its training state: the proxy is trained again with
    the same seed, only the damaged record is scored again, and every file ends as before."""
    ref = tmp_path / "ref"
    proxysel.train_proxy(pool, out=ref, model=str(tiny_model_dir), **TRAIN)
    run = copy(ref, tmp_path)
    stage = run / "stages" / "train-proxy"
    damage(stage / "shard-00003.parquet", "overwrite")
    damage(stage / "merged.parquet", "truncate")
    damage(run / "scores.parquet", "empty")
    code, out = verify(run, capsys)
    assert code == 2 and out.count("  damaged: ") == 3

    with caplog.at_level(logging.WARNING):
        proxysel.train_proxy(pool, out=run, model=str(tiny_model_dir), **TRAIN)
    assert any("trained again" in r.getMessage() for r in caplog.records)
    assert_same_outputs(run, ref)
    assert verify(run, capsys)[0] == 0
