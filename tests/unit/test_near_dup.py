"""signals.near_dup: shingles, MinHash signatures, the band layout and the groups, each against an
independent computation (Python sets and integers, all pairs), and the signal through score/select."""

from __future__ import annotations

import json
import zlib
from itertools import combinations

import numpy as np
import pyarrow.parquet as pq
import pytest

from proxysel.signals.near_dup import (
    PRIME,
    _coefficients,
    band_width,
    duplicate_groups,
    jaccard,
    minhash_signatures,
    shingles,
)


def crc_set(grams: list[str]) -> set[int]:
    return {zlib.crc32(g.encode()) for g in grams}


def test_shingles_are_word_windows_case_folded():
    assert set(shingles("Copy:  A b\nC", 2).tolist()) == crc_set(["copy :", ": a", "a b", "b c"])
    assert set(shingles("one two", 3).tolist()) == crc_set(["one two"])  # shorter than n: one shingle
    assert set(shingles("", 3).tolist()) == crc_set([""])
    s = shingles("x y x y x y", 2)
    assert s.dtype == np.uint32 and s.tolist() == sorted(set(s.tolist()))  # sorted, unique


def test_jaccard_matches_python_sets():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = (np.unique(rng.integers(0, 30, rng.integers(1, 20))).astype(np.uint32) for _ in range(2))
        sa, sb = set(a.tolist()), set(b.tolist())
        assert jaccard(a, b) == pytest.approx(len(sa & sb) / len(sa | sb))


def test_signatures_match_a_plain_python_minhash_and_ignore_chunking():
    sets = [shingles(t, 2) for t in ["the cat sat on the mat", "a b", "the cat sat on a mat", "z"]]
    a, b = _coefficients(16, seed=3)
    p = int(PRIME)
    want = np.array([[min((int(ai) * int(x) + int(bi)) % p for x in s.tolist()) for ai, bi in zip(a, b)]
                     for s in sets])
    assert np.array_equal(minhash_signatures(sets, 16, 3), want)
    assert np.array_equal(minhash_signatures(sets, 16, 3, chunk=3), want)  # records split across chunks
    assert not np.array_equal(minhash_signatures(sets, 16, 4), want)  # another seed, other functions


def test_signature_agreement_estimates_jaccard():
    words = [f"w{i}" for i in range(200)]
    x = " ".join(words)
    y = " ".join(words[:150] + [f"v{i}" for i in range(50)])  # unigram Jaccard 150 / 250 = 0.6
    sx, sy = shingles(x, 1), shingles(y, 1)
    assert jaccard(sx, sy) == pytest.approx(0.6)
    sig = minhash_signatures([sx, sy], 2048, 0)
    assert np.mean(sig[0] == sig[1]) == pytest.approx(0.6, abs=0.04)


def test_band_width_is_the_widest_band_that_keeps_recall_at_the_threshold():
    def recall(t, r, perms):
        return 1 - (1 - t ** r) ** (perms // r)

    for t, perms in [(0.5, 128), (0.8, 128), (0.3, 64), (0.9, 256)]:
        r = band_width(t, perms)
        assert recall(t, r, perms) >= 0.95
        assert all(recall(t, w, perms) < 0.95 for w in range(r + 1, perms + 1))
    assert band_width(0.5, 128) == 3  # 42 bands of 3: the module docstring's example


def test_hand_worked_groups():
    texts = ["Copy: a b c d e f",        # 0
             "Reverse: x y z w",          # 1
             "copy:  A B C D E F",        # 2: 0 again, case and spaces aside
             "Copy: a b c d x f",         # 3: 3-gram Jaccard with 0: 4 shared of 8 -> 0.5
             "Write again: p q r s t"]    # 4: unrelated
    groups, facts = duplicate_groups(texts, ngram=3, threshold=0.5)
    assert groups.tolist() == [0, 1, 0, 0, 4]
    assert facts["groups"] == 3 and facts["pairs_passed"] == 2
    groups, _ = duplicate_groups(texts, ngram=3, threshold=0.6)  # 0.5 is below: 3 stays apart
    assert groups.tolist() == [0, 1, 0, 3, 4]


def test_groups_are_transitive():
    a = "one two three four five six seven eight"
    b = "one two three four five six nine ten"      # with a: 3-gram Jaccard 4/8
    c = "eleven two three four five six nine ten"   # with b: 5/7; with a: 3/9, below 0.5
    assert jaccard(shingles(a, 3), shingles(c, 3)) < 0.5
    groups, _ = duplicate_groups([c, b, a], ngram=3, threshold=0.5)
    assert groups.tolist() == [0, 0, 0]


def _all_pairs_groups(texts: list[str], ngram: int, threshold: float) -> list[set[int]]:
    sets = [set(shingles(t, ngram).tolist()) for t in texts]
    parent = list(range(len(texts)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in combinations(range(len(texts)), 2):
        if len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= threshold:
            parent[max(find(i), find(j))] = min(find(i), find(j))
    out: dict[int, set[int]] = {}
    for i in range(len(texts)):
        out.setdefault(find(i), set()).add(i)
    return list(out.values())


def test_lsh_groups_agree_with_all_pairs_on_a_templated_corpus():
    rng = np.random.default_rng(7)
    templates = ["Copy: {}", "Write again: {}", "Reverse the letters {}", "Sort: {}"]
    texts = []
    for _ in range(150):
        letters = " ".join(rng.choice(list("abcdefghij"), rng.integers(3, 8)))
        texts.append(rng.choice(templates).format(letters) + "\n" + letters)
    texts += texts[:20]  # exact repeats
    got, _ = duplicate_groups(texts, ngram=3, threshold=0.5, perms=128, seed=1)
    want = _all_pairs_groups(texts, 3, 0.5)
    got_sets = {}
    for i, g in enumerate(got.tolist()):
        got_sets.setdefault(g, set()).add(i)
    # every LSH group lies within one exact group (only pairs that passed the exact check are joined) ...
    assert all(any(s <= w for w in want) for s in got_sets.values())
    # ... and nearly every exact group is found whole (MinHash may miss a pair near the threshold)
    found = sum(1 for w in want if w in list(got_sets.values()))
    assert found >= 0.95 * len(want)
    assert all(got[150 + k] == got[k] for k in range(20))  # repeats: always found
    again, _ = duplicate_groups(texts, ngram=3, threshold=0.5, perms=128, seed=1)
    assert np.array_equal(got, again)


def test_the_signal_through_score_and_select(tmp_path):
    import proxysel

    recs = [{"id": "a", "instruction": "Copy: a b c d e f", "output": "a b c d e f"},
            {"id": "b", "instruction": "Sort: z y x", "output": "x y z"},
            {"id": "c", "instruction": "copy: a b c d e f", "output": "A B C D E F"},
            {"id": "d", "instruction": "Reverse: p q r", "output": "r q p"},
            {"id": "e", "instruction": "Copy: a b c d e f", "output": "a b c d e f"}]
    data = tmp_path / "pool.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    run = proxysel.score(data, out=tmp_path / "run", signals=["near_dup"])
    t = pq.read_table(run / "scores.parquet").to_pydict()
    assert t["dup_rank"] == [0, 0, 1, 0, 2] and t["dup_count"] == [3, 1, 3, 1, 3]
    stage = json.loads((run / "manifest.json").read_text())["stages"]["near_dup"]
    assert stage["groups"] == 3 and stage["duplicates"] == 2
    assert stage["params"] == {"ngram": 3, "threshold": 0.5, "perms": 128, "seed": 0}
    sel = proxysel.select(run, method="top", budget=3, signal="dup_rank", order="low", name="dd")
    kept = [json.loads(line)["id"] for line in (sel / "selected.jsonl").read_text().splitlines()]
    assert sorted(kept) == ["a", "b", "d"]


def test_bad_options_are_refused():
    from proxysel.options import FieldError
    from proxysel.signals.near_dup import NearDupConfig

    with pytest.raises(FieldError, match="threshold must be > 0"):
        NearDupConfig(threshold=0)
    with pytest.raises(FieldError, match="ngram"):
        NearDupConfig(ngram=0)
