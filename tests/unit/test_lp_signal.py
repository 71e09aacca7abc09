"""LP and LP_app against hand-computed values (DESIGN.md section 1)."""

from __future__ import annotations

import numpy as np
import pytest

from proxysel.signals.lp import lp, lp_app

PPL = np.array([
    # P_0   P_1   P_2   P_3
    [10.0, 4.0, 3.0, 2.0],    # LP(1) = 6/8,  LP(2) = 1/8,  LP_app(1) = 0.6
    [5.0, 5.0, 5.0, 5.0],     # never moved: LP = 0 (P_0 == P_n), LP_app = 0
    [1.0, 1.0, 1.0, 1.0],     # the official "fully truncated" row
    [4.0, 5.0, 3.0, 2.0],     # got worse in epoch 1: LP(1) = -1/2
    [np.nan, np.nan, np.nan, np.nan],
    [8.0, 6.0, np.nan, 4.0],  # P_2 missing: LP(1) and LP_app(1) are defined, LP(2) is not
    [3.0, 2.0, 4.0, 5.0],     # ended above P_0: LP(1) = 1 / -2
])


def test_lp_values():
    np.testing.assert_allclose(lp(PPL), [0.75, 0.0, 0.0, -0.5, np.nan, 0.5, -0.5], equal_nan=True)
    np.testing.assert_allclose(lp(PPL, i=2), [0.125, 0.0, 0.0, 1.0, np.nan, np.nan, 1.0],
                               equal_nan=True)
    np.testing.assert_allclose(lp(PPL, i=3), [0.125, 0.0, 0.0, 0.5, np.nan, np.nan, 0.5],
                               equal_nan=True)


def test_lp_epochs_sum_to_one_where_moved():
    moved = [0, 3, 6]
    total = sum(lp(PPL, i)[moved] for i in (1, 2, 3))
    np.testing.assert_allclose(total, 1.0)


def test_lp_app_values():
    np.testing.assert_allclose(lp_app(PPL), [0.6, 0.0, 0.0, -0.25, np.nan, 0.25, 1 / 3],
                               equal_nan=True)
    np.testing.assert_allclose(lp_app(PPL, i=2)[[0, 3]], [0.1, 0.5])


def test_lp_app_needs_only_the_epochs_it_reads():
    one_epoch = np.array([[10.0, 4.0], [4.0, 3.0]])
    np.testing.assert_allclose(lp_app(one_epoch), [0.6, 0.25])
    later_missing = np.array([[10.0, 4.0, np.nan, np.nan]])
    np.testing.assert_allclose(lp_app(later_missing), [0.6])
    assert np.isnan(lp(later_missing))[0]  # LP needs P_n


def test_output_dtype_and_shape():
    out = lp(PPL.astype(np.float32))
    assert out.dtype == np.float64 and out.shape == (PPL.shape[0],)
    assert lp_app(PPL).dtype == np.float64


def test_lp_zero_total_is_not_a_division_warning():
    with np.errstate(all="raise"):
        lp(np.array([[2.0, 2.0, 2.0], [3.0, 2.0, 1.0]]))


@pytest.mark.parametrize("fn", [lp, lp_app])
@pytest.mark.parametrize("i", [0, 4, -1, 1.0, True, "1"])
def test_epoch_out_of_range(fn, i):
    with pytest.raises(ValueError, match=r"i must be an integer epoch in \[1, 3\]"):
        fn(PPL, i=i)


@pytest.mark.parametrize("fn", [lp, lp_app])
@pytest.mark.parametrize("shape", [(5,), (5, 1), (2, 2, 2)])
def test_bad_shape(fn, shape):
    with pytest.raises(ValueError, match="ppl_epoch must be a 2-D array"):
        fn(np.ones(shape))


def test_epoch_columns_by_hand():
    from proxysel.signals.lp import epoch_column

    np.testing.assert_array_equal(epoch_column(PPL, "ppl_0"), PPL[:, 0])
    np.testing.assert_array_equal(epoch_column(PPL, "ppl_3"), PPL[:, 3])
    # the first row by hand: LP(2) = (4 - 3) / (10 - 2), LP_app(1) = (10 - 4) / 10
    assert epoch_column(PPL, "lp_2")[0] == 1 / 8 and epoch_column(PPL, "lp_app_1")[0] == 0.6
    np.testing.assert_array_equal(epoch_column(PPL, "lp_2"), lp(PPL, 2))
    np.testing.assert_array_equal(epoch_column(PPL, "lp_app_3"), lp_app(PPL, 3))
    with pytest.raises(ValueError, match="ppl_epoch holds P_0..P_3, not P_4"):
        epoch_column(PPL, "ppl_4")
    with pytest.raises(ValueError, match=r"i must be an integer epoch in \[1, 3\], got 0"):
        epoch_column(PPL, "lp_0")
    with pytest.raises(ValueError, match="not a per-epoch column"):
        epoch_column(PPL, "ppl")
