"""The target-aware methods end to end (issue 14): `score --signals color,rds --reference`, `select
--method rds|color`, and `run` with `reference:`; a run without a reference set is refused, naming it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from proxysel.cli.main import main
from proxysel.store import RunFolder


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    d = tmp_path_factory.mktemp("targeted")
    pool = [{"id": f"p{i:02d}", "instruction": f"Sort the numbers {i} 1 2" if i % 2 else f"Name a colour {i}",
             "output": f"The sorted numbers are 1 2 {i}" if i % 2 else "Blue is a colour, and so is red",
             "family": "sort" if i % 2 else "colour"} for i in range(24)]
    ref = [{"id": f"r{i}", "instruction": f"Name a colour {100 + i}", "output": "Blue is a colour",
            "family": f} for i, f in enumerate(["colour", "colour", "sort"])]
    (d / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool))
    (d / "ref.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ref))
    return d / "pool.jsonl", d / "ref.jsonl"


def test_score_and_select_color_and_rds(sets, tmp_path, tiny_model_dir, capsys):
    pool, ref = sets
    run = tmp_path / "run"
    assert main(["-q", "score", str(pool), "--signals", "color,rds", "--reference", str(ref), "--model",
                 str(tiny_model_dir), "--color-epochs", "1", "--out", str(run)]) == 0
    folder = RunFolder(run)
    printed = capsys.readouterr().out.splitlines()  # where each output went
    assert printed == [f"scores: {folder.scores_path}", f"vectors: {folder.vectors_path('rds')}",
                       f"vectors: {folder.vectors_path('rds_reference')}"]
    scores = folder.read_scores().to_pydict()
    color = np.array(scores["color"])
    prior, conditional = np.array(scores["color_loss_prior"]), np.array(scores["color_loss_conditional"])
    assert np.allclose(color, prior - conditional)
    assert folder.vector_sets() == ["rds", "rds_reference"]
    assert folder.manifest["stages"]["color"]["prior"] == "given"
    assert folder.manifest["reference"]["n_examples"] == 3

    assert main(["-q", "select", str(run), "--method", "color", "--budget", "6", "--name", "c"]) == 0
    kept = folder.selection_ids("c")
    assert sorted(kept) == sorted(np.array(scores["id"])[np.argsort(-color, kind="stable")[:6]].tolist())
    assert main(["-q", "select", str(run), "--method", "rds", "--budget", "6", "--name", "r"]) == 0
    meta = folder.read_selection("r").meta
    assert len(folder.selection_ids("r")) == 6 and meta["reference_fingerprint"]
    assert any("kept per group" in n for n in meta["notes"])  # round-robin over the reference's families
    capsys.readouterr()


def test_reference_aware_signals_and_selectors_need_a_reference(sets, tmp_path, tiny_model_dir, capsys):
    pool, _ = sets
    assert main(["-q", "score", str(pool), "--signals", "rds", "--model", str(tiny_model_dir), "--out",
                 str(tmp_path / "r")]) == 2
    assert "--reference" in capsys.readouterr().err and not (tmp_path / "r").exists()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{path: {pool}}}\nscore: {{signals: [loss], model: {tiny_model_dir}}}\n"
                   "select: {method: rds, budget: 3}\n")
    assert main(["-q", "run", str(cfg)]) == 2
    assert "reference" in capsys.readouterr().err


def test_run_with_a_reference_set(sets, tmp_path, tiny_model_dir):
    pool, ref = sets
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {tmp_path / 'run'}\ndata: {{path: {pool}}}\nreference: {ref}\n"
                   f"score: {{signals: [loss, rds], model: {tiny_model_dir}}}\n"
                   "select:\n  - {method: top, signal: ppl, order: middle, budget: 0.9, name: mid}\n"
                   "  - {method: rds, budget: 0.25, from: mid, name: mid-rds}\n"
                   "report: {enabled: false}\n")
    assert main(["-q", "run", str(cfg)]) == 0
    folder = RunFolder(tmp_path / "run")
    assert set(folder.selection_ids("mid-rds")) <= set(folder.selection_ids("mid"))
    assert len(folder.selection_ids("mid-rds")) == 6


def test_run_with_quotas_over_the_reference_groups(sets, tmp_path, capsys):
    """cluster_by: reference through `run`: the embedding stage embeds the reference set too
    (embedding_reference), every pool row joins its task's group, and a run without a reference set
    is refused before any work, naming the field."""
    pool, _ = sets
    ref = tmp_path / "ref.jsonl"
    texts = [("rs1", "Sort the numbers 9 4 7", "The sorted numbers are 4 7 9", "sort"),
             ("rs2", "Sort the numbers 8 3", "The sorted numbers are 3 8", "sort"),
             ("rc1", "Name a colour you like", "Green is a colour", "colour"),
             ("rc2", "Name a colour of the sky", "Blue is a colour", "colour")]
    ref.write_text("".join(json.dumps({"id": i, "instruction": q, "output": a, "family": f}) + "\n"
                           for i, q, a, f in texts))
    select = ("select: {method: cluster_random, cluster_by: reference, size_power: 0.5, budget: 8, "
              "name: ref-sqrt}\nreport: {enabled: false}\n")
    cfg = tmp_path / "c.yaml"
    data = f"data: {{path: {pool}}}\nscore: {{signals: [embedding]}}\n"
    cfg.write_text(f"out: {tmp_path / 'none'}\n{data}{select}")
    assert main(["-q", "run", str(cfg)]) == 2
    assert "reference" in capsys.readouterr().err and not (tmp_path / "none").exists()

    cfg.write_text(f"out: {tmp_path / 'run'}\ndata: {{path: {pool}}}\nreference: {ref}\n"
                   f"score: {{signals: [embedding]}}\n{select}")
    assert main(["-q", "run", str(cfg)]) == 0
    folder = RunFolder(tmp_path / "run")
    assert folder.vector_sets() == ["embedding", "embedding_reference"]
    family = {r["id"]: r["family"] for r in map(json.loads, pool.read_text().splitlines())}
    kept = folder.selection_ids("ref-sqrt")
    assert sorted(family[i] for i in kept) == ["colour"] * 4 + ["sort"] * 4  # 12 and 12: equal square roots
    reasons = folder.read_selection("ref-sqrt").table.to_pydict()
    for i, why in zip(reasons["id"], reasons["reason"]):
        assert why.startswith(f"group '{family[i]}'"), (i, why)
