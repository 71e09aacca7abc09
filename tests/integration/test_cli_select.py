"""`proxysel select` and `compare` end to end on a scored run (tiny random-init model)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")

from proxysel import api  # noqa: E402
from proxysel.cli.main import main  # noqa: E402
from proxysel.store import Run  # noqa: E402


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("sel")
    data = tmp / "pool.jsonl"
    rng = np.random.default_rng(1)
    words = "alpha beta gamma delta the quick brown fox jumps over lazy dog".split()
    lines = []
    for i in range(60):
        rec = {"id": f"e{i:03d}", "instruction": " ".join(rng.choice(words, 5)),
               "output": " ".join(rng.choice(words, int(rng.integers(1, 12)))), "source": "ab"[i % 2]}
        lines.append(json.dumps(rec, separators=(", ", ": ")))  # a layout json.dumps would not give back
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = tmp / "run"
    api.score(data, out=run, signals="loss,ifd", model=str(tiny_model_dir))
    return data, run


def test_select_top_writes_verbatim_records_and_selection_parquet(scored):
    data, run = scored
    assert main(["-q", "select", str(run), "--method", "top", "--signal", "loss", "--order", "low",
                 "--budget", "0.25", "--seed", "3", "--name", "easy"]) == 0
    out = run / "selections" / "easy"
    sel = pq.read_table(out / "selection.parquet").to_pydict()
    scores = pq.read_table(run / "scores.parquet").to_pydict()
    loss = dict(zip(scores["id"], scores["loss"]))
    kept = [i for i, s in zip(sel["id"], sel["selected"]) if s]
    assert len(kept) == 15
    expected = sorted(loss, key=lambda i: (loss[i], i))[:15]
    assert set(kept) == set(expected)
    input_lines = data.read_text(encoding="utf-8").splitlines()
    written = (out / "selected.jsonl").read_text(encoding="utf-8").splitlines()
    assert written == [ln for ln in input_lines if json.loads(ln)["id"] in set(kept)]  # verbatim, input order
    meta = json.loads((out / "meta.json").read_text())
    assert meta["n_selected"] == 15 and meta["method"] == "top"


def test_select_is_deterministic_and_refuses_conflicting_name(scored, capsys):
    _, run = scored
    a = api.select(run, method="random", budget=10, seed=7, name="r7")
    first = (a / "selection.parquet").read_bytes()
    api.select(run, method="random", budget=10, seed=7, name="r7")
    assert (a / "selection.parquet").read_bytes() == first
    assert main(["-q", "select", str(run), "--method", "random", "--budget", "10", "--seed", "8",
                 "--name", "r7"]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_selection_written_before_a_new_parameter_is_not_a_conflict(scored, capsys):
    from proxysel.selectors import get_selector
    from proxysel.stages.select import same_selection

    _, run = scored
    out = api.select(run, method="random", budget=10, seed=4, name="old")
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["params"]["size_power"] == 1.0
    del meta["params"]["size_power"]  # as a version before size_power wrote it
    meta_path.write_text(json.dumps(meta))
    assert main(["-q", "select", str(run), "--method", "random", "--budget", "10", "--seed", "4",
                 "--name", "old"]) == 0
    random = get_selector("random")()
    new = json.loads(meta_path.read_text())
    assert same_selection(meta, new, random)
    assert not same_selection(meta, {**new, "params": {**new["params"], "size_power": 0.5}}, random)
    assert not same_selection(meta, {**new, "seed": 5}, random)


def test_select_lp_app_over_embedding_clusters(scored, tmp_path):
    _, run = scored
    with Run.open(run) as r:
        ids = r.read_scores().column("id").to_pylist()
        rng = np.random.default_rng(0)
        r.merge_scores(pa.table({"id": ids, "lp_app": rng.random(len(ids))}))
        vecs = (np.repeat(np.eye(3, dtype=np.float32), 20, axis=0)
                + rng.normal(0, 0.01, (60, 3)).astype(np.float32))
        r.write_embeddings(ids, vecs, model="synthetic")
    out = api.select(run, method="lp_app", budget=0.2, clusters=3, seed=0, name="lpapp")
    sel = pq.read_table(out / "selection.parquet").to_pydict()
    lp = dict(zip(ids, pq.read_table(run / "scores.parquet").column("lp_app").to_pylist()))
    for c in set(sel["cluster"]):
        members = [i for i, cc in zip(sel["id"], sel["cluster"]) if cc == c]
        kept = [i for i, cc, s in zip(sel["id"], sel["cluster"], sel["selected"]) if cc == c and s]
        assert len(members) == 20 and len(kept) == 4  # exact budget, proportional to cluster size
        assert set(kept) == set(sorted(members, key=lambda i: lp[i])[:4])  # lowest LP_app first


def test_select_ifd_and_bad_budget(scored, capsys):
    _, run = scored
    ifd = dict(zip(*pq.read_table(run / "scores.parquet", columns=["id", "ifd"]).to_pydict().values()))
    below = sum(1 for v in ifd.values() if v < 1)
    if below >= 3:
        out = api.select(run, method="ifd", budget=3, name="ifd3")
        kept = [i for i, s in zip(*pq.read_table(out / "selection.parquet", columns=["id", "selected"])
                                 .to_pydict().values()) if s]
        assert set(kept) == set(sorted((i for i in ifd if ifd[i] < 1), key=lambda i: -ifd[i])[:3])
    assert main(["-q", "select", str(run), "--method", "top", "--signal", "loss", "--budget", "0"]) == 2
    assert main(["-q", "select", str(run), "--method", "nope", "--budget", "0.1"]) == 2


def test_compare_runs_self_is_perfect(scored, capsys):
    _, run = scored
    res = api.compare(run, run, signal="loss")
    assert res["spearman"] == pytest.approx(1.0) and res["kendall"] == pytest.approx(1.0)
    assert all(v == 1.0 for v in res["overlap"].values())
    assert main(["compare", str(run), str(run), "--signal", "loss"]) == 0
    assert "Spearman +1.0000" in capsys.readouterr().out
