"""RDS+ selection: a hand-worked similarity case, the blocked computation against a literal rewrite of
the official round-robin loop, and the reference-set errors."""

from __future__ import annotations

import numpy as np
import pytest

from proxysel.selectors import ScoreTable, get_selector
from proxysel.selectors.rds import group_similarity, round_robin

# Reference rows are basis vectors, so a unit pool row's cosine similarities are its coordinates.
#   ref-b = e3 (group b), ref-a1 = e1 (group a), ref-a2 = e2 (group a)
REF_IDS = ["ref-b", "ref-a1", "ref-a2"]
REF = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=np.float32)
REF_GROUPS = np.array(["b", "a", "a"], dtype=object)
POOL_IDS = ["p0", "p1", "p2", "p3", "p4", "p5"]
POOL = np.array([
    #  e1    e2    e3        group a = max(e1, e2)   group b = e3
    [0.60, 0.80, 0.00],  # p0      0.80                 0.00
    [0.28, 0.96, 0.00],  # p1      0.96                 0.00
    [0.00, 0.60, 0.80],  # p2      0.60                 0.80
    [0.64, 0.48, 0.60],  # p3      0.64                 0.60
    [0.00, 0.28, 0.96],  # p4      0.28                 0.96
    [0.00, 0.00, 1.00],  # p5      0.00                 1.00
], dtype=np.float32)
# Group a, best first: p1 .96, p0 .80, p3 .64, p2 .60, p4 .28, p5 0
# Group b, best first: p5 1.0, p4 .96, p2 .80, p3 .60, p0 0, p1 0 (tie: pool order)
# Turns a, b, a, b, ...: round 1 p1 (a), p5 (b); round 2 p0 (a), p4 (b); round 3 p3 (a), p2 (b).
GROUP_ORDER = ["p1", "p5", "p0", "p4", "p3", "p2"]
# by="example", turns ref-a1 (e1), ref-a2 (e2), ref-b (e3) (sorted ids: ref-a1 < ref-a2 < ref-b):
#   e1: p3 .64, p0 .60, p1 .28, p2 0, p4 0, p5 0    e2: p1 .96, p0 .80, p2 .60, p3 .48, p4 .28, p5 0
#   e3: p5 1.0, p4 .96, p2 .80, p3 .60, p0 0, p1 0
#   round 1: p3, p1, p5; round 2: p0, p0 (taken: the turn is used up), p4; round 3: p1 (taken), p2.
EXAMPLE_ORDER = ["p3", "p1", "p5", "p0", "p4", "p2"]


def table(pool=POOL, reference: ScoreTable | None = None, **columns) -> ScoreTable:
    if reference is None:
        reference = ScoreTable(ids=REF_IDS, columns={"rds": REF, "group": REF_GROUPS})
    return ScoreTable(ids=POOL_IDS[:len(pool)], columns={"rds": pool, **columns},
                      reference=reference)


def order_of(sel) -> list[str]:
    return [sel.ids[i] for i in np.argsort(np.where(sel.rank < 0, 1 << 40, sel.rank), kind="stable")
            if sel.rank[i] > 0]


def test_round_robin_over_groups_hand_worked():
    sel = get_selector("rds")().select(table(), 3)
    assert sel.selected_ids == ["p0", "p1", "p5"]
    assert order_of(sel) == GROUP_ORDER
    assert sel.reason[1] == "group 'a': sim=0.96, round 1, kept"
    assert sel.reason[2] == "group 'b': sim=0.8, round 3, dropped"
    assert sel.reason[3] == "group 'a': sim=0.64, round 3, dropped"
    assert (sel.cluster == -1).all() and sel.budget == 3 and sel.method == "rds"
    assert "kept per group: a 2, b 1" in sel.notes


def test_one_group_is_the_top_k_by_max_similarity():
    # Without groups: max over all three references -> p5 1.0, p1 .96 / p4 .96, then .80s.
    ref = ScoreTable(ids=REF_IDS, columns={"rds": REF})
    sel = get_selector("rds")().select(table(reference=ref), 3)
    assert sel.selected_ids == ["p1", "p4", "p5"]  # group a's p0 loses its place to group b's p4
    assert sel.reason[5] == "group 'reference': sim=1, round 1, kept"


def test_round_robin_over_reference_examples_hand_worked():
    sel = get_selector("rds")(by="example").select(table(), 4)
    assert order_of(sel) == EXAMPLE_ORDER
    assert sel.selected_ids == ["p0", "p1", "p3", "p5"]
    assert sel.reason[2] == "reference 'ref-a2': sim=0.6, round 3, dropped"


def test_ties_keep_pool_order_and_the_whole_pool_is_ranked():
    pool = np.repeat(POOL[[4]], 4, axis=0)  # four copies of p4
    sel = get_selector("rds")().select(table(pool=pool), 2)
    assert sel.selected_ids == ["p0", "p1"]
    assert sel.rank.tolist() == [1, 2, 3, 4]


def official_round_robin(pool: np.ndarray, ref: np.ndarray, groups: np.ndarray, k: int) -> list[int]:
    """A literal rewrite of get_top_aggregated_influences.py (max within a group, round_robin
    across groups), in float64 with Python dicts and sorted(), as the official script runs."""
    p = pool / np.linalg.norm(pool, axis=1, keepdims=True)
    r = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    sims = p.astype(np.float64) @ r.astype(np.float64).T
    per_group = {}
    for g in sorted(set(groups.tolist())):
        cols = [j for j in range(len(groups)) if groups[j] == g]
        scores = {i: max(sims[i, j] for j in cols) for i in range(len(pool))}
        per_group[g] = sorted(scores.items(), key=lambda x: x[1], reverse=True)
    taken: dict[int, float] = {}
    while len(taken) < k:
        for g in per_group:
            if len(taken) >= k:
                break
            idx, score = per_group[g].pop(0)
            taken[idx] = min(score, taken.get(idx, np.inf))
    return list(taken)


def random_case(n=400, m=30, d=16, seed=3):
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((n, d)).astype(np.float32)
    ref = rng.standard_normal((m, d)).astype(np.float32)
    groups = rng.choice(np.array(["x", "y", "z", "w"], dtype=object), m)
    return pool, ref, groups


def test_blocked_equals_unblocked_equals_the_official_loop():
    pool, ref, groups = random_case()
    k = 150
    blocked, names = round_robin(pool, ref, groups, block_rows=7, chunk_bytes=1)  # one group a pass
    whole, _ = round_robin(pool, ref, groups, block_rows=10_000)
    assert names == ["w", "x", "y", "z"]
    assert np.array_equal(blocked.visit, whole.visit)
    assert np.array_equal(blocked.group, whole.group)
    np.testing.assert_allclose(blocked.sim, whole.sim, atol=1e-6)
    ours = np.argsort(blocked.visit, kind="stable")[:k].tolist()
    assert ours == official_round_robin(pool, ref, groups, k)  # the same examples, in the same order


def test_by_example_equals_the_official_per_example_loop():
    pool, ref, _ = random_case(n=200, m=9, seed=5)
    ids = np.array([f"r{j}" for j in range(len(ref))], dtype=object)
    rr, _ = round_robin(pool, ref, ids, chunk_bytes=1)
    assert np.argsort(rr.visit)[:120].tolist() == official_round_robin(pool, ref, ids, 120)


def test_group_similarity_is_the_per_group_max_cosine():
    pool, ref, _ = random_case(n=50, m=6, seed=1)
    ref_unit = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    out = group_similarity(pool * 3.0, ref_unit, np.array([0, 2, 5]), block_rows=4)  # any pool norm
    full = (pool / np.linalg.norm(pool, axis=1, keepdims=True)) @ ref_unit.T
    expected = np.stack([full[:, 0:2].max(1), full[:, 2:5].max(1), full[:, 5:6].max(1)], axis=1)
    assert out.dtype == np.float32 and out.shape == (50, 3)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_no_reference_is_a_clear_error():
    t = ScoreTable(ids=POOL_IDS, columns={"rds": POOL})
    with pytest.raises(ValueError, match="rds needs a reference set"):
        get_selector("rds")().select(t, 2)


def test_reference_of_another_width_is_a_clear_error():
    ref = ScoreTable(ids=["r"], columns={"rds": np.ones((1, 5), dtype=np.float32)})
    with pytest.raises(ValueError, match=r"shape \(1, 5\), the pool's has 3 dimensions"):
        get_selector("rds")().select(table(reference=ref), 2)


def test_nonfinite_reference_rows_are_left_out_with_a_note():
    ref_emb = np.vstack([REF, np.full((1, 3), np.nan, dtype=np.float32)])
    ref = ScoreTable(ids=REF_IDS + ["bad"], columns={"rds": ref_emb,
                                                    "group": np.append(REF_GROUPS, "c")})
    sel = get_selector("rds")().select(table(reference=ref), 3)
    assert sel.selected_ids == ["p0", "p1", "p5"]  # as without the NaN row (group c is gone)
    assert "1 of 4 reference rows left out (rds not finite)" in sel.notes


def test_bad_parameters():
    with pytest.raises(ValueError, match="by 'task' is not one of group, example"):
        get_selector("rds")(by="task")
    with pytest.raises(ValueError, match="block_rows"):
        get_selector("rds")(block_rows=0)
    with pytest.raises(ValueError, match="reference must be a ScoreTable"):
        ScoreTable(ids=["a"], reference={"ids": ["r"]})
