"""The contract every registered selector keeps, whatever its method.

Runs over ``available_selectors()``: a new selector is checked with no edit here. Extra parameter
sets for some selectors exercise their options (clusters, strata, bands) under the same contract.
"""

from __future__ import annotations

import numpy as np
import pytest

from proxysel.selectors import ScoreTable, available_selectors, get_selector, resolve_budget

N = 240

# Parameters a selector cannot do without (fuse needs its signals); every case starts from them.
BASE_PARAMS: dict[str, dict] = {
    "fuse": {"weights": {"lp_app": "low", "ppl": "middle", "color": "high"}},
}

# Further parameter sets, besides the defaults, that must keep the contract too.
EXTRA_PARAMS: dict[str, list[dict]] = {
    "random": [{"within_clusters": True}],
    "top": [{"order": "high"}, {"order": "middle", "within_clusters": True}],
    "lp": [{"clusters": 6}, {"within_clusters": False}],
    "lp_app": [{"clusters": 6}],
    "s2l": [{"clusters": 8}, {"clusters": None}, {"clusters": 5, "stratify": "source"}],
    "density": [{"within_clusters": True, "clusters": 4}],
    "ask_llm": [{"within_clusters": True}],
    "ifd": [{"signal": "ifd_loss"}, {"within_clusters": True}],
    "longest": [{"within_clusters": True}],
    "cluster_random": [{"clusters": 6}],
    "color": [{"tau": 2.0}, {"tau": 1.5, "within_clusters": True}],
    "fuse": [{"within_clusters": True},
             {"weights": {"lp_app": {"direction": "low", "weight": 2}, "ppl": "middle"},
              "within_clusters": True, "clusters": 4}],
    "rds": [{"by": "example"}, {"block_rows": 7}],
}

CASES = [(name, {**BASE_PARAMS.get(name, {}), **params}) for name in available_selectors()
         for params in [{}] + EXTRA_PARAMS.get(name, [])]


def case_id(case) -> str:
    name, params = case
    return name + "".join(f"-{k}={v}" for k, v in params.items())


def make_table(seed: int = 0) -> ScoreTable:
    """Every column a built-in selector reads, with the values they expect, and a reference set
    (for the target-aware selectors) of 12 rows in 3 groups."""
    rng = np.random.default_rng(seed)
    reference = ScoreTable(
        ids=[f"ref-{i:02d}" for i in range(12)],
        columns={"rds": rng.standard_normal((12, 8)).astype(np.float32),
                 "group": np.array(["code", "math", "chat"] * 4, dtype=object)},
    )
    return ScoreTable(
        ids=[f"ex-{i:04d}" for i in range(N)],
        columns={
            "lp": rng.normal(0.8, 0.2, N),
            "lp_app": rng.normal(0.5, 0.1, N),
            "ppl": rng.lognormal(1.5, 0.5, N),
            "ask_llm": rng.uniform(0, 1, N),
            "ifd": rng.uniform(0.1, 0.99, N),
            "ifd_loss": rng.uniform(0.1, 0.99, N),
            "density": rng.uniform(1e-3, 1e-1, N),
            "embedding": rng.standard_normal((N, 8)).astype(np.float32),
            "trajectory": np.cumsum(-rng.uniform(0, 0.5, (N, 5)), axis=1) + 3.0,
            "cluster": rng.integers(0, 7, N),
            "source": rng.choice(np.array(["a", "b", "c"], dtype=object), N, p=[0.2, 0.3, 0.5]),
            # last, so that the columns above keep their values; many ties, as token counts have
            "n_response_tokens": rng.integers(1, 120, N),
            "color": rng.normal(0.1, 0.3, N),
            "rds": rng.standard_normal((N, 8)).astype(np.float32),
        },
        reference=reference,
    )


def build(name: str, params: dict):
    return get_selector(name)(**params)


@pytest.fixture(params=CASES, ids=[case_id(c) for c in CASES])
def case(request):
    return request.param


@pytest.mark.parametrize("budget", [1, 37, 0.25, N, 1.0])
def test_budget_met_exactly_without_duplicates(case, budget):
    name, params = case
    table = make_table()
    sel = build(name, params).select(table, budget, seed=0)
    assert sel.n_selected == resolve_budget(budget, N)
    assert sel.budget == sel.n_selected
    assert sel.ids == table.ids
    chosen = sel.selected_ids
    assert len(chosen) == len(set(chosen)) == sel.n_selected


def test_output_shapes_and_reasons(case):
    name, params = case
    sel = build(name, params).select(make_table(), 50, seed=1)
    assert sel.method == name
    assert sel.selected.dtype == bool and sel.selected.shape == (N,)
    assert sel.rank.dtype == np.int64 and sel.rank.shape == (N,)
    assert sel.cluster.dtype == np.int64 and sel.cluster.shape == (N,)
    assert ((sel.rank >= 1) | (sel.rank == -1)).all()
    assert len(sel.reason) == N and all(isinstance(r, str) and r for r in sel.reason)
    kept = np.array([r.endswith("kept") for r in sel.reason])
    assert np.array_equal(kept, sel.selected)
    assert sel.to_arrow().num_rows == N


def test_deterministic_for_a_seed(case):
    name, params = case
    a = build(name, params).select(make_table(), 0.3, seed=123)
    b = build(name, params).select(make_table(), 0.3, seed=123)
    assert np.array_equal(a.selected, b.selected)
    assert np.array_equal(a.rank, b.rank)
    assert np.array_equal(a.cluster, b.cluster)
    assert a.reason == b.reason
    c = build(name, params).select(make_table(), 0.3, seed=np.random.default_rng(9))
    d = build(name, params).select(make_table(), 0.3, seed=np.random.default_rng(9))
    assert np.array_equal(c.selected, d.selected)


def test_params_round_trip(case):
    name, params = case
    sel = build(name, params)
    again = get_selector(name)(**sel.get_params())
    assert np.array_equal(sel.select(make_table(), 20, seed=2).selected,
                          again.select(make_table(), 20, seed=2).selected)


def test_nan_signal_rows_are_excluded(case):
    name, params = case
    selector = build(name, params)
    table = make_table()
    needed = selector.required_columns()
    if not needed:
        pytest.skip(f"{case_id(case)} reads no signal column (truncated rows are checked below)")
    bad = np.arange(0, N, 3)
    for col in needed:
        values = table.columns[col].astype(np.float64 if table.columns[col].ndim == 1 else
                                          table.columns[col].dtype, copy=True)
        if values.ndim == 1:
            values[bad] = np.nan
        else:
            values[bad, -1] = np.nan
        table.columns[col] = values
    sel = selector.select(table, 40, seed=0)
    assert not sel.selected[bad].any()
    # Selectors that read several signals name the one (the first of required_columns) in the reason.
    named = f"excluded: signal '{needed[0]}' is NaN" if selector.name_signals else "excluded: signal is NaN"
    assert all(sel.reason[i] == named for i in bad)
    assert (sel.rank[bad] == -1).all()
    assert sel.n_selected == 40


def test_truncated_rows_are_excluded(case):
    name, params = case
    table = make_table()
    table.truncated = np.zeros(N, dtype=bool)
    table.truncated[::2] = True
    sel = build(name, params).select(table, 60, seed=0)
    assert not sel.selected[::2].any()
    assert all(sel.reason[i] == "excluded: truncated" for i in range(0, N, 2))
    assert sel.n_selected == 60


def test_all_excluded_is_a_clear_error(case):
    name, params = case
    table = make_table()
    table.truncated = np.ones(N, dtype=bool)
    with pytest.raises(ValueError, match="no candidates"):
        build(name, params).select(table, 5, seed=0)


def test_budget_above_the_candidates_is_a_clear_error(case):
    name, params = case
    table = make_table()
    table.truncated = np.arange(N) >= 10
    with pytest.raises(ValueError, match="budget 11 is larger than the 10 candidates"):
        build(name, params).select(table, 11, seed=0)


@pytest.mark.parametrize("budget", [0, -3, 1.5, 0.0, N + 1, "10%"])
def test_bad_budget_is_a_clear_error(case, budget):
    name, params = case
    with pytest.raises(ValueError, match="budget"):
        build(name, params).select(make_table(), budget, seed=0)
