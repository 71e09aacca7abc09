"""Group metrics and paired statistics (benchmarking.stats) on hand-worked cases and known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from proxysel.benchmarking import stats
from proxysel.benchmarking.stats import (
    group_means,
    group_metric,
    macro_mean,
    paired_comparison,
    pooled_mean,
    seed_interval,
    seeds_needed,
    stratified_resamples,
    verdict,
)

G5 = np.array(["a", "a", "a", "b", "b"], dtype=object)


# --------------------------------------------------------------------------------- group metrics


def test_group_and_macro_means_by_hand():
    v = np.array([1.0, 3.0, 5.0, 10.0, 20.0])
    # a: (1+3+5)/3 = 3; b: (10+20)/2 = 15; macro (3+15)/2 = 9; pooled 39/5 = 7.8
    assert group_means(v, G5) == {"a": 3.0, "b": 15.0}
    assert macro_mean(v, G5) == 9.0
    assert pooled_mean(v) == pytest.approx(7.8)
    # token weights 1,1,2 | 1,1: a = (1+3+10)/4 = 3.5, b = 15, macro 9.25, pooled (14+30)/6
    w = np.array([1, 1, 2, 1, 1])
    assert group_means(v, G5, w) == {"a": 3.5, "b": 15.0}
    assert macro_mean(v, G5, w) == 9.25
    assert pooled_mean(v, w) == pytest.approx(44 / 6)


def test_nan_rows_are_skipped_and_counted():
    v = np.array([1.0, 3.0, np.nan, 10.0, 20.0, np.inf])
    g = np.array(["a", "a", "a", "b", "b", "b"])
    w = np.array([1.0, 1.0, 5.0, 1.0, np.nan, 1.0])
    m = group_metric(v, g)
    assert m.means == {"a": 2.0, "b": 15.0} and m.macro == 8.5 and m.pooled == pytest.approx(34 / 4)
    assert m.counts == {"a": 2, "b": 2} and m.skipped == {"a": 1, "b": 1} and m.n_skipped == 2
    mw = group_metric(v, g, w)  # b's second row now has a NaN weight: left out too
    assert mw.means == {"a": 2.0, "b": 10.0} and mw.skipped == {"a": 1, "b": 2}


def test_a_group_with_no_usable_row_makes_the_macro_undefined():
    m = group_metric([1.0, np.nan], ["a", "b"])
    assert m.means["a"] == 1.0 and math.isnan(m.means["b"]) and math.isnan(m.macro)
    assert m.pooled == 1.0


def test_no_groups_is_one_group():
    m = group_metric([1.0, 2.0, 6.0])
    assert m.means == {"all": 3.0} and m.macro == m.pooled == 3.0


def test_bad_shapes_and_weights_are_refused():
    with pytest.raises(ValueError, match="one entry per example"):
        group_metric([1.0, 2.0], ["a"])
    with pytest.raises(ValueError, match="weights must be >= 0"):
        group_metric([1.0, 2.0], ["a", "a"], [1.0, -1.0])


# ------------------------------------------------------------------------------------- verdict


@pytest.mark.parametrize("lo,hi,higher,expected", [
    (0.01, 0.03, True, "beats"), (0.01, 0.03, False, "trails"),
    (-0.03, -0.01, True, "trails"), (-0.03, -0.01, False, "beats"),
    (-0.01, 0.02, True, "ties"), (-0.01, 0.02, False, "ties"),
    (0.0, 0.0, True, "ties"), (0.0, 0.02, True, "ties"), (-0.02, 0.0, False, "ties"),
    # rounding residue of an exact 0 (seen in a skewed bench: [5.5e-16, 4.83] points) ties; a small
    # real difference still counts
    (5.5e-16, 4.8, True, "ties"), (-4.8, -5.5e-16, False, "ties"), (1e-6, 0.02, True, "beats"),
])
def test_verdict(lo, hi, higher, expected):
    assert verdict(lo, hi, higher) == expected


def test_verdict_refuses_a_bad_interval():
    with pytest.raises(ValueError, match="finite interval"):
        verdict(0.1, -0.1, True)
    with pytest.raises(ValueError, match="finite interval"):
        verdict(float("nan"), 0.1, True)


# --------------------------------------------------------------------------- paired statistics


def test_a_constant_shift_gives_a_point_interval():
    rng = np.random.default_rng(0)
    base = rng.normal(1.0, 0.3, (3, 40))
    groups = np.repeat(["x", "y", "z"], [10, 25, 5])
    d = 0.05
    up = paired_comparison(base + d, base, groups, higher_is_better=True, n_boot=300)
    assert up.lo == pytest.approx(d, abs=1e-12) and up.hi == pytest.approx(d, abs=1e-12)
    assert up.deltas == pytest.approx([d] * 3, abs=1e-12) and up.std == pytest.approx(0.0, abs=1e-12)
    assert (up.verdict, up.wins, up.n_seeds) == ("beats", 3, 3)
    # the same +d on a loss is worse
    loss = paired_comparison(base + d, base, groups, higher_is_better=False, n_boot=300)
    assert (loss.verdict, loss.wins) == ("trails", 0)
    # -d on a loss is better; token weights do not change a constant shift
    w = rng.integers(1, 50, 40)
    down = paired_comparison(base - d, base, groups, higher_is_better=False, weights=w, n_boot=300)
    assert down.lo == pytest.approx(-d, abs=1e-12) and down.hi == pytest.approx(-d, abs=1e-12)
    assert (down.verdict, down.wins) == ("beats", 3)


def test_identical_arrays_tie_at_zero():
    base = np.random.default_rng(1).normal(size=(2, 30))
    res = paired_comparison(base, base.copy(), np.repeat(["a", "b"], 15), higher_is_better=True, n_boot=200)
    assert (res.lo, res.hi, res.mean, res.wins, res.verdict) == (0.0, 0.0, 0.0, 0, "ties")


def test_two_group_macro_deltas_by_hand():
    #                   a    a    a    b    b
    sel = np.array([[0.5, 0.7, 0.9, 2.0, 4.0],
                    [0.4, 0.6, 0.8, 3.0, 3.0]])
    base = np.array([[0.5, 0.5, 0.5, 1.0, 1.0],
                     [0.6, 0.6, 0.6, 2.0, 2.0]])
    # seed 0: diffs a (0, .2, .4) -> mean .2; b (1, 3) -> 2; macro 1.1
    # seed 1: diffs a (-.2, 0, .2) -> 0; b (1, 1) -> 1; macro 0.5
    res = paired_comparison(sel, base, G5, higher_is_better=True, n_boot=100)
    assert res.deltas == pytest.approx([1.1, 0.5])
    assert res.mean == pytest.approx(0.8) and res.std == pytest.approx(math.sqrt(0.18))
    assert res.wins == 2 and res.groups == {"a": 3, "b": 2} and res.n_eval == 5
    # token-weighted, weights 1,1,2 | 1,3:
    # seed 0: a (0 + .2 + .8)/4 = .25; b (1 + 9)/4 = 2.5; macro 1.375
    # seed 1: a (-.2 + 0 + .4)/4 = .05; b (1 + 3)/4 = 1; macro 0.525
    wres = paired_comparison(sel, base, G5, higher_is_better=True, weights=[1, 1, 2, 1, 3], n_boot=100)
    assert wres.deltas == pytest.approx([1.375, 0.525])
    # a loss (lower is better) on the same numbers: no seed wins
    assert paired_comparison(sel, base, G5, higher_is_better=False, n_boot=100).wins == 0


def test_the_seed_interval_is_students_t_by_hand():
    # deltas 1, 2, 3, 4, 5, 6: mean 3.5, std sqrt(3.5); t(0.975, 5) = 2.5706 (a t table)
    lo, hi = seed_interval([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    half = 2.5706 * math.sqrt(3.5) / math.sqrt(6)
    assert lo == pytest.approx(3.5 - half, abs=1e-4) and hi == pytest.approx(3.5 + half, abs=1e-4)
    # t(0.95, 2) = 2.9200 at level 0.9
    lo, hi = seed_interval([0.0, 1.0, 2.0], level=0.9)
    assert (lo, hi) == pytest.approx((1 - 2.92 / math.sqrt(3), 1 + 2.92 / math.sqrt(3)), abs=1e-4)
    # equal deltas give a point; one seed gives no interval
    assert seed_interval([0.2, 0.2]) == pytest.approx((0.2, 0.2))
    assert seed_interval([0.5]) is None
    with pytest.raises(ValueError, match="finite"):
        seed_interval([1.0, float("nan")])


def test_seeds_needed_is_the_first_n_whose_t_interval_clears_zero():
    # mean 1, std 2: t(0.975, n-1) * 2 / sqrt(n) falls below 1 first at n = 18 (t table: n = 17 ->
    # 2.1199 * 2 / 4.1231 = 1.0283; n = 18 -> 2.1098 * 2 / 4.2426 = 0.9946)
    assert seeds_needed(1.0, 2.0) == 18 and seeds_needed(-1.0, 2.0) == 18
    # and the interval at that n does exclude 0, at the one before it does not
    lo, _ = seed_interval(1.0 + 2.0 * _unit_spread(18))
    lo_before, _ = seed_interval(1.0 + 2.0 * _unit_spread(17))
    assert lo > 0 >= lo_before
    assert seeds_needed(0.0, 1.0) is None and seeds_needed(0.1, 0.0) == 2
    assert seeds_needed(1e-3, 10.0, limit=50) is None
    with pytest.raises(ValueError):
        seeds_needed(float("nan"), 1.0)


def _unit_spread(n: int) -> np.ndarray:
    """n values of mean 0 and sample std 1."""
    x = np.arange(n, dtype=float)
    x -= x.mean()
    return x / x.std(ddof=1)


def test_beating_over_eval_examples_can_tie_over_seeds():
    # Three seeds whose deltas are +1.1, +0.5 and -0.2 (one per-example shift each, 40 examples):
    # over eval examples the mean +0.4667 is exact (the shifts are constant), so the bootstrap
    # interval is a point and beats; over seeds the spread (std 0.6506) makes it tie.
    base = np.random.default_rng(3).normal(size=(3, 40))
    shifts = np.array([[1.1], [0.5], [-0.2]])
    res = paired_comparison(base + shifts, base, higher_is_better=True, n_boot=200)
    assert res.verdict == "beats" and res.lo == pytest.approx(res.hi)
    half = 4.3027 * 0.65064 / math.sqrt(3)
    assert (res.seed_lo, res.seed_hi) == pytest.approx((0.46667 - half, 0.46667 + half), abs=1e-3)
    assert res.seed_verdict == "ties" and res.to_dict()["seed_verdict"] == "ties"
    assert res.seeds_needed == seeds_needed(res.mean, res.std) == 10
    # one seed: no spread, no seed interval
    one = paired_comparison(base[:1] + 1.0, base[:1], higher_is_better=True, n_boot=50)
    assert (one.seed_lo, one.seed_hi, one.seed_verdict) == (None, None, None)
    # a loss with every seed better by the same amount beats over seeds too
    down = paired_comparison(base - 0.3, base, higher_is_better=False, n_boot=50)
    assert down.seed_verdict == "beats" and down.seeds_needed is None  # only a tie asks for seeds


def test_the_resampled_examples_carry_their_own_token_weights():
    # One group, per-example differences (0, 1) with weights (1, 3). A resample of two draws is
    # (0,0) -> 0, (1,1) -> 1, or a mix -> token-weighted 3/4 (unweighted 1/2), with probabilities
    # 1/4, 1/4, 1/2: the 30% and 70% percentiles are both the mixed value.
    sel, base = np.array([[0.0, 1.0]]), np.zeros((1, 2))
    weighted = paired_comparison(sel, base, higher_is_better=True, weights=[1, 3], n_boot=2000, level=0.4)
    plain = paired_comparison(sel, base, higher_is_better=True, n_boot=2000, level=0.4)
    assert (weighted.lo, weighted.hi) == (0.75, 0.75)
    assert (plain.lo, plain.hi) == (0.5, 0.5)


@pytest.mark.parametrize("sizes", [[2000], [1500, 500]])
def test_bootstrap_width_matches_the_analytic_standard_error(sizes):
    # Selector = baseline + N(0, sigma^2) noise. The macro mean of G group means has
    # sd = sqrt(sum_g sigma^2 / n_g) / G; the 95% half-width is 1.96 sd.
    sigma = 0.7
    n = sum(sizes)
    rng = np.random.default_rng(42)
    base = rng.normal(2.0, 1.0, (1, n))
    sel = base + rng.normal(0.0, sigma, (1, n))
    groups = np.repeat([f"g{k}" for k in range(len(sizes))], sizes)
    res = paired_comparison(sel, base, groups, higher_is_better=True, n_boot=2000, seed=3)
    sd = math.sqrt(sum(sigma ** 2 / s for s in sizes)) / len(sizes)
    half = (res.hi - res.lo) / 2
    assert half == pytest.approx(1.96 * sd, rel=0.15)
    assert res.lo < res.mean < res.hi
    assert (res.lo + res.hi) / 2 == pytest.approx(res.mean, abs=0.5 * sd)


def test_the_bootstrap_is_deterministic_by_seed():
    rng = np.random.default_rng(5)
    sel, base = rng.normal(size=(3, 200)), rng.normal(size=(3, 200))
    groups = rng.choice(["p", "q", "r"], 200)
    a = paired_comparison(sel, base, groups, higher_is_better=False, seed=11, n_boot=500)
    b = paired_comparison(sel, base, groups, higher_is_better=False, seed=11, n_boot=500)
    c = paired_comparison(sel, base, groups, higher_is_better=False, seed=12, n_boot=500)
    assert a == b
    assert (a.lo, a.hi) != (c.lo, c.hi) and a.deltas == c.deltas


def test_stratified_resamples_keep_every_group_size(monkeypatch):
    monkeypatch.setattr(stats, "_BLOCK_ELEMENTS", 64)  # several blocks of 64 // 12 = 5 rows
    groups = np.array(list("aaabbbbbcccc"))
    blocks = list(stratified_resamples(groups, 23, np.random.default_rng(0)))
    assert len(blocks) == 5 and sum(len(b) for b in blocks) == 23
    idx = np.concatenate(blocks)
    assert idx.shape == (23, 12)
    assert (groups[idx] == groups).all()  # position j always draws from example j's group
    assert len({tuple(r) for r in idx.tolist()}) > 1  # and the rows differ


def test_examples_nan_in_any_seed_are_left_out_of_both_sides():
    rng = np.random.default_rng(7)
    sel, base = rng.normal(size=(2, 12)), rng.normal(size=(2, 12))
    groups = np.repeat(["a", "b"], 6)
    sel_nan, base_nan = sel.copy(), base.copy()
    sel_nan[1, 2] = np.nan   # a truncated example, seen in one seed of the selector
    base_nan[0, 9] = np.inf
    res = paired_comparison(sel_nan, base_nan, groups, higher_is_better=True, n_boot=400, seed=1)
    keep = np.ones(12, dtype=bool)
    keep[[2, 9]] = False
    ref = paired_comparison(sel[:, keep], base[:, keep], groups[keep], higher_is_better=True, n_boot=400,
                            seed=1)
    assert (res.n_eval, res.n_skipped) == (10, 2) and res.groups == {"a": 5, "b": 5}
    assert (res.deltas, res.lo, res.hi) == (ref.deltas, ref.lo, ref.hi)


def test_one_seed_and_pooled():
    res = paired_comparison([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], higher_is_better=True, n_boot=100)
    assert res.n_seeds == 1 and res.std == 0.0 and res.deltas == [2.0] and res.groups == {"all": 3}
    assert res.to_dict()["verdict"] == "beats"


def test_clear_errors():
    with pytest.raises(ValueError, match="aligned by seed"):
        paired_comparison(np.zeros((2, 3)), np.zeros((3, 3)), higher_is_better=True)
    with pytest.raises(ValueError, match=r"groups \['b'\] have no eval example"):
        paired_comparison([[1.0, np.nan]], [[0.0, 0.0]], ["a", "b"], higher_is_better=True)
    with pytest.raises(ValueError, match="n_boot"):
        paired_comparison([[1.0]], [[0.0]], higher_is_better=True, n_boot=0)
