"""Budgets, allocation, the score table and the registry (proxysel.selectors.base / registry)."""

from __future__ import annotations

import numpy as np
import pytest

from proxysel.selectors import ScoreTable, Selection, available_selectors, get_selector, resolve_budget
from proxysel.selectors.base import (
    allocate_by_power,
    allocate_largest_remainder,
    allocate_official,
    split_rngs,
)

# ----------------------------------------------------------------------------------- budgets

@pytest.mark.parametrize("budget, n, expected", [
    (0.1, 52002, 5200),      # 5200.2
    (0.5, 5, 3),             # 2.5 rounds half up, not to even
    (0.25, 10, 3),           # 2.5 again
    (0.001, 10, 1),          # at least one
    (0.999, 10, 10),
    (1, 10, 1),
    (10, 10, 10),
    (np.int64(7), 10, 7),
    (7.0, 10, 7),            # an integral float is a count
    (1.0, 10, 10),           # 100%: the whole pool (the official LP code accepts it)
])
def test_resolve_budget(budget, n, expected):
    assert resolve_budget(budget, n) == expected


@pytest.mark.parametrize("budget", [0, 0.0, -1, -0.5, 2.5, float("nan"), float("inf"), True, "0.1", None])
def test_resolve_budget_rejects(budget):
    with pytest.raises(ValueError, match=r"budget must be a fraction in \(0, 1\] or a count >= 1"):
        resolve_budget(budget, 100)


def test_resolve_budget_one_is_one_example_and_one_point_zero_the_pool():
    assert resolve_budget(1, 100) == 1 and resolve_budget(1.0, 100) == 100


def test_resolve_budget_larger_than_pool():
    with pytest.raises(ValueError, match=r"budget 101 is larger than the candidate pool \(100 examples\)"):
        resolve_budget(101, 100)


def test_resolve_budget_empty_pool():
    with pytest.raises(ValueError, match="empty"):
        resolve_budget(0.5, 0)


# -------------------------------------------------------------------------------- allocation

def test_official_rounding_1_9_23():
    # Small2Large subset.py: np.array_split(cluster, round(100 / 10))[0] -> ceil(n_c / 10).
    assert allocate_official(np.array([1, 9, 23]), 0.10).tolist() == [1, 1, 3]


@pytest.mark.parametrize("pct, m", [(33, 3), (25, 4), (10, 10), (5, 20), (3, 33), (1, 100)])
def test_official_rounding_matches_array_split(pct, m):
    sizes = np.array([0, 1, 2, 3, 9, 23, 100, 101, 257])
    expected = [len(np.array_split(np.arange(s), m)[0]) for s in sizes]
    assert allocate_official(sizes, pct / 100).tolist() == expected


def random_allocations(seed: int, n: int, max_size: int, max_groups: int):
    """(sizes, budget) pairs: random group sizes (some 0, never all) and a budget that fits them."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        sizes = rng.integers(0, max_size, size=rng.integers(1, max_groups))
        if sizes.sum():
            yield sizes, int(rng.integers(0, sizes.sum() + 1))


def test_largest_remainder_exact_and_proportional():
    sizes = np.array([6, 3, 1])
    assert allocate_largest_remainder(sizes, 3).tolist() == [2, 1, 0]  # .8 and .9 beat .3
    for sizes, budget in random_allocations(0, 200, 50, 30):
        q = allocate_largest_remainder(sizes, budget)
        assert q.sum() == budget
        assert (q <= sizes).all() and (q >= 0).all()
        ideal = budget * sizes / sizes.sum()
        assert (np.abs(q - ideal) < 1).all()


def test_largest_remainder_ties_go_to_the_earlier_group():
    assert allocate_largest_remainder(np.array([5, 5, 5, 5]), 2).tolist() == [1, 1, 0, 0]


def test_power_allocation_hand_worked():
    sizes = np.array([100, 25, 4])
    # sqrt weights 10, 5, 2: shares 17.6, 8.8, 3.5 -> floors 17, 8, 3; the two left go to .82 and .65
    assert allocate_by_power(sizes, 30, 0.5).tolist() == [18, 9, 3]
    # equal: 10 each, but the 4-row group is taken whole and its 6 re-split over the other two
    assert allocate_by_power(sizes, 30, 0.0).tolist() == [13, 13, 4]
    # two rounds of water-filling: 5 each fills the 2- and 1-row groups, then 8.5 each fills the
    # 6-row group, and the 50-row group takes the remaining 11
    assert allocate_by_power(np.array([50, 6, 2, 1]), 20, 0.0).tolist() == [11, 6, 2, 1]
    # ties in the remainders go to the earlier group
    assert allocate_by_power(np.array([6, 3, 1]), 6, 0.0).tolist() == [3, 2, 1]
    assert allocate_by_power(np.array([0, 9, 4]), 13, 0.5).tolist() == [0, 9, 4]


def _water_level(sizes: np.ndarray, budget: int, power: float) -> np.ndarray:
    """Real-valued capped quotas min(size, level * size**power), the level found by bisection."""
    w = np.where(sizes > 0, sizes.astype(float) ** power, 0.0)
    lo, hi = 0.0, float(sizes.max()) / max(w[w > 0].min(), 1e-12) + 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.minimum(sizes, mid * w).sum() < budget else (lo, mid)
    return np.minimum(sizes, hi * w)


@pytest.mark.parametrize("power", [0.0, 0.3, 0.5, 0.75])
def test_power_allocation_against_a_bisection_of_the_water_level(power):
    for sizes, budget in random_allocations(1, 300, 60, 25):
        q = allocate_by_power(sizes, budget, power)
        assert q.sum() == budget and (q >= 0).all() and (q <= sizes).all()
        assert (np.abs(q - _water_level(sizes, budget, power)) < 1 + 1e-6).all()


def test_power_one_is_the_proportional_split():
    for sizes, budget in random_allocations(2, 100, 40, 20):
        expected = allocate_largest_remainder(sizes, budget)
        assert allocate_by_power(sizes, budget, 1.0).tolist() == expected.tolist()


def test_capped_allocation_with_weights_apart_from_the_caps():
    from proxysel.selectors.base import allocate_capped

    # weights 3:1 over caps 10 and 10: 9 -> 6.75/2.25 -> 7 and 2
    assert allocate_capped(np.array([3.0, 1.0]), np.array([10, 10]), 9).tolist() == [7, 2]
    # the first group fills its cap of 2; what is left can only go to the zero-weight group
    assert allocate_capped(np.array([1.0, 0.0]), np.array([2, 5]), 4).tolist() == [2, 2]
    with pytest.raises(ValueError, match="finite and >= 0"):
        allocate_capped(np.array([1.0, -1.0]), np.array([2, 5]), 4)


def test_power_allocation_bad_input():
    with pytest.raises(ValueError, match="size power must be in"):
        allocate_by_power(np.array([3, 4]), 2, 1.5)
    with pytest.raises(ValueError, match="cannot allocate 8"):
        allocate_by_power(np.array([3, 4]), 8, 0.5)


# ------------------------------------------------------------------------------- score table

def test_score_table_duplicate_ids():
    with pytest.raises(ValueError, match=r"duplicate ids \['a'\]"):
        ScoreTable(ids=["a", "b", "a"])


def test_score_table_column_length():
    with pytest.raises(ValueError, match="column 'lp' has"):
        ScoreTable(ids=["a", "b"], columns={"lp": np.array([1.0])})


def test_score_table_list_column_and_truncated_column():
    t = ScoreTable(ids=["a", "b"], columns={"trajectory": [[1.0, 2.0], [3.0, 4.0]],
                                           "truncated": np.array([False, True])})
    assert t.column("trajectory").shape == (2, 2)
    assert t.truncated.tolist() == [False, True]
    assert "truncated" not in t.columns


def test_score_table_missing_column_names_what_is_there():
    t = ScoreTable(ids=["a"], columns={"ppl": np.array([1.0])})
    with pytest.raises(ValueError, match=r"no column 'lp' \(columns: ppl\)"):
        t.column("lp")


def test_score_table_from_arrow_round_trip():
    pa = pytest.importorskip("pyarrow")
    arrow = pa.table({"id": ["x", "y"], "lp": [0.1, None], "trajectory": [[1.0, 2.0], [3.0, 4.0]],
                      "source": ["s1", "s2"], "cluster": pa.array([0, 1], pa.int64()),
                      "truncated": [False, True]})
    t = ScoreTable.from_arrow(arrow)
    assert t.ids == ["x", "y"]
    assert np.isnan(t.column("lp")[1]) and t.column("lp").dtype == np.float64
    assert t.column("trajectory").shape == (2, 2)
    assert t.truncated.tolist() == [False, True]
    sel = get_selector("top")(signal="lp").select(t, 1)
    out = sel.to_arrow()
    assert out.column_names == ["id", "selected", "rank", "cluster", "reason"]
    assert out.column("selected").to_pylist() == [True, False]


def test_score_table_from_arrow_list_columns():
    pa = pytest.importorskip("pyarrow")
    arrow = pa.table({"id": ["x", "y", "z"],
                      "ppl_epoch": pa.array([[4.0, 2.0], None, [3.0, None]], pa.list_(pa.float64())),
                      "embedding": pa.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], pa.list_(pa.float32(), 2))})
    t = ScoreTable.from_arrow(arrow)
    np.testing.assert_array_equal(t.column("ppl_epoch"), [[4.0, 2.0], [np.nan, np.nan], [3.0, np.nan]])
    assert t.column("embedding").shape == (3, 2)
    ragged = pa.table({"id": ["x", "y"], "trajectory": [[1.0, 2.0], [1.0]]})
    with pytest.raises(ValueError, match="list column 'trajectory' has rows of different lengths"):
        ScoreTable.from_arrow(ragged)


def test_selection_helpers():
    s = Selection(ids=["a", "b", "c"], selected=np.array([True, False, True]), rank=np.array([1, 2, -1]),
                  cluster=np.array([-1, -1, -1]), reason=["", "", ""])
    assert s.n_selected == 2 and s.selected_ids == ["a", "c"]


# --------------------------------------------------------------------------------- registry

def test_registry_lists_every_method():
    assert set(available_selectors()) >= {"random", "top", "lp", "lp_app", "s2l", "density", "ask_llm", "ifd"}


def test_registry_unknown_name():
    with pytest.raises(ValueError, match="unknown selector 'nope'; available: random, top, lp, lp_app, s2l"):
        get_selector("nope")


def test_get_params_round_trip():
    sel = get_selector("top")(signal="ask_llm", order="high", within_clusters=True, clusters=5)
    params = sel.get_params()
    assert params["signal"] == "ask_llm" and params["order"] == "high" and params["clusters"] == 5
    assert repr(get_selector("top")(**params)) == repr(sel)


def test_seed_streams_are_reproducible_and_independent():
    a1, b1 = split_rngs(3)
    a2, b2 = split_rngs(3)
    assert a1.random() == a2.random() and b1.random() == b2.random()
    a, b = split_rngs(3)
    assert a.random() != b.random()
    with pytest.raises(ValueError, match="seed must be given"):
        split_rngs(None)
