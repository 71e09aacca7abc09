"""The lexical signal: IBM Model 1 by EM, checked by hand and against a plain loop, and its qmax scores."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from proxysel.signals.lexical import NULL, LexicalConfig, fit_ibm1, lexical_scores, qmax_scores, words


def plain_ibm1(sources, targets, iterations):
    """IBM Model 1 as in Brown et al. (1993), written as the textbook's loops over a dense table."""
    src_vocab = sorted({NULL, *(w for s in sources for w in s)})
    tgt_vocab = sorted({w for t in targets for w in t})
    t = {(e, f): 1.0 / len(tgt_vocab) for e in src_vocab for f in tgt_vocab}
    for _ in range(iterations):
        count = {k: 0.0 for k in t}
        total = {e: 0.0 for e in src_vocab}
        for src, tgt in zip(sources, targets):
            es = [NULL, *src]
            for f in tgt:
                z = sum(t[(e, f)] for e in es)
                for e in es:
                    count[(e, f)] += t[(e, f)] / z
                    total[e] += t[(e, f)] / z
        t = {(e, f): count[(e, f)] / total[e] if total[e] else t[(e, f)] for (e, f) in t}
    return t


def test_words_split_punctuation_and_keep_case():
    assert words("Write in code: c A, f!", 10) == ["Write", "in", "code", ":", "c", "A", ",", "f", "!"]
    assert words("a b c", 2) == ["a", "b"]


def test_one_em_round_by_hand():
    # r1: (NULL a) -> x; r2: (NULL a b) -> x y. From the uniform table, x of r1 splits 1/2, 1/2 and
    # every word of r2 splits 1/3 each: counts (N,x) = (a,x) = 5/6, (b,x) = (N,y) = (a,y) = (b,y) = 1/3;
    # totals N = a = 7/6, b = 2/3.
    t = fit_ibm1([["a"], ["a", "b"]], [["x"], ["x", "y"]], iterations=1)
    want = {(NULL, "x"): 5 / 7, ("a", "x"): 5 / 7, ("b", "x"): 1 / 2,
            (NULL, "y"): 2 / 7, ("a", "y"): 2 / 7, ("b", "y"): 1 / 2}
    assert t.keys() == want.keys()
    for k, v in want.items():
        assert t[k] == pytest.approx(v, rel=1e-12)
    qmax, least = qmax_scores([["a"], ["a", "b"]], [["x"], ["x", "y"]], iterations=1)
    # r1: ln max(t(x|N), t(x|a)) = ln 5/7; r2: x -> 5/7, y -> max(2/7, 2/7, 1/2) = 1/2
    assert qmax == pytest.approx([math.log(5 / 7), (math.log(5 / 7) + math.log(1 / 2)) / 2], rel=1e-12)
    assert least == pytest.approx([math.log(5 / 7), math.log(1 / 2)], rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_em_matches_the_textbook_loops(seed):
    rng = np.random.default_rng(seed)
    src_words, tgt_words = list("abcdef"), list("uvwxyz")
    sources = [[str(w) for w in rng.choice(src_words, rng.integers(1, 5))] for _ in range(12)]
    targets = [[str(w) for w in rng.choice(tgt_words, rng.integers(1, 5))] for _ in range(12)]
    got = fit_ibm1(sources, targets, iterations=4)
    want = plain_ibm1(sources, targets, 4)
    for k, v in want.items():  # pairs that never co-occur have t = 0 after one round, and no entry here
        assert got.get(k, 0.0) == pytest.approx(v, abs=1e-12)
    # qmax from the same table, word by word
    qmax, least = qmax_scores(sources, targets, iterations=4)
    for i, (src, tgt) in enumerate(zip(sources, targets)):
        logs = [math.log(max(want[(e, f)] for e in [NULL, *src])) for f in tgt]
        assert qmax[i] == pytest.approx(sum(logs) / len(logs), abs=1e-12)
        assert least[i] == pytest.approx(min(logs), abs=1e-12)


def test_a_changed_item_is_the_worst_explained_answer_of_its_group():
    code = dict(zip("abcdef", "rstuvw"))
    rng = np.random.default_rng(0)
    copy_src, copy_tgt, code_src, code_tgt = [], [], [], []
    for _ in range(60):
        x = [str(c) for c in rng.choice(list("abcdef"), 3, replace=False)]
        copy_src.append(["Copy", ":", *x])
        copy_tgt.append(list(x))
    for _ in range(12):
        x = [str(c) for c in rng.choice(list("abcdef"), 3, replace=False)]
        code_src.append(["Encode", ":", *x])
        code_tgt.append([code[c] for c in x])
    code_tgt[5] = [code_tgt[5][0], code_tgt[5][1], "x"]  # a wrong answer: one item changed
    sources, targets = copy_src + code_src, copy_tgt + code_tgt
    one, _ = qmax_scores(sources, targets)
    two_groups = np.r_[np.zeros(60, int), np.ones(12, int)]

    class Ex:  # the two parts lexical_scores reads, through _sides
        def __init__(self, s, t):
            from proxysel.data.example import Message
            self.messages = (Message("user", " ".join(s)), Message("assistant", " ".join(t)))

        def missing(self, needs):
            return None

    grouped, least = lexical_scores([Ex(s, t) for s, t in zip(sources, targets)], two_groups,
                                    LexicalConfig())
    assert int(np.argmin(grouped[60:])) == 5 and int(np.argmin(least[60:])) == 5
    assert grouped[60 + 5] < np.delete(grouped[60:], 5).min() - 0.4  # by a clear margin (nats)
    assert least[60 + 5] < np.delete(least[60:], 5).min() - 1.0
    # a group fits its own table: the same record scored with a copy task's table beside it is lower
    assert one[60 + 5] < grouped[60 + 5]


def test_the_signal_through_score_and_select(tmp_path):
    import proxysel

    code = dict(zip("abcdef", "rstuvw"))
    rng = np.random.default_rng(1)
    recs = []
    for i in range(30):
        x = [str(c) for c in rng.choice(list("abcdef"), 3, replace=False)]
        recs.append({"id": f"p{i}", "instruction": "Encode: " + " ".join(x),
                     "output": " ".join(code[c] for c in x)})
    recs[7]["output"] = recs[7]["output"][:-1] + "x"  # the one wrong answer
    data = tmp_path / "pool.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    run = proxysel.score(data, out=tmp_path / "run", signals=["embedding", "lexical"],
                         lexical={"cluster_size": 100})
    t = pq.read_table(run / "scores.parquet").to_pydict()
    order = [t["id"].index(r["id"]) for r in recs]
    qmax = np.array(t["qmax"])[order]
    assert int(np.argmin(qmax)) == 7 and np.isfinite(qmax).all()
    stage = json.loads((run / "manifest.json").read_text())["stages"]["lexical"]
    assert stage["params"] == {"cluster_size": 100, "iterations": 5, "max_words": 64, "seed": 0}
    sel = proxysel.select(run, method="top", budget=29, signal="qmax", order="high", name="lex")
    kept = {json.loads(line)["id"] for line in (sel / "selected.jsonl").read_text().splitlines()}
    assert kept == {r["id"] for r in recs} - {"p7"}


def test_a_record_without_a_prompt_gets_nan(tmp_path):
    from proxysel.data.readers import read_pool

    data = tmp_path / "text.jsonl"
    data.write_text(json.dumps({"id": "t", "text": "just text"}) + "\n")
    pool = read_pool(data)
    qmax, least = lexical_scores(pool.examples, np.zeros(1, int), LexicalConfig())
    assert np.isnan(qmax).all() and np.isnan(least).all()


def test_bad_options_are_refused():
    from proxysel.options import FieldError

    with pytest.raises(FieldError, match="cluster_size"):
        LexicalConfig(cluster_size=0)
    with pytest.raises(FieldError, match="iterations"):
        LexicalConfig(iterations=0)
    with pytest.raises(ValueError, match="at least one target word"):
        qmax_scores([["a"]], [[]])


def test_records_it_does_not_fit_get_nan_and_a_reason(tmp_path):
    import proxysel

    recs = [{"id": f"p{i}", "messages": [{"role": "user", "content": f"Copy: {c} b"},
                                         {"role": "assistant", "content": f"{c} b"}]}
            for i, c in enumerate("acde")]
    recs.append({"id": "solo", "messages": [{"role": "assistant", "content": "no prompt"}]})
    data = tmp_path / "pool.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    run = proxysel.score(data, out=tmp_path / "run", signals=["embedding", "lexical"])
    t = pq.read_table(run / "scores.parquet").to_pydict()
    k = t["id"].index("solo")
    assert math.isnan(t["qmax"][k]) and t["lexical_na"][k] == "messages record has no prompt"
    assert all(math.isfinite(t["qmax"][i]) and not t["lexical_na"][i] for i in range(len(recs)) if i != k)
    stage = json.loads((run / "manifest.json").read_text())["stages"]["lexical"]
    assert stage["not_applicable"]["count"] == 1 and stage["not_applicable"]["first_ids"] == ["solo"]
