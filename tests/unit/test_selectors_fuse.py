"""Rank fusion on a hand-worked table."""

from __future__ import annotations

import numpy as np
import pytest

from proxysel.selectors import ScoreTable, get_selector
from proxysel.selectors.fuse import average_rank, rank_percentile

IDS = list("abcde")
X = np.array([1.0, 2.0, 3.0, 4.0, 5.0])       # low:    percentiles 0, .25, .5, .75, 1
Y = np.array([10.0, 40.0, 20.0, 30.0, 50.0])  # high:   ranks 1 4 2 3 5 -> (5 - r) / 4 = 1, .25, .75, .5, 0
Z = np.array([3.0, 1.0, 5.0, 2.0, 4.0])       # middle: ranks 3 1 5 2 4 -> |r - 3| / 2 = 0, 1, 1, .5, .5
WEIGHTS = {"x": "low", "y": "high", "z": {"direction": "middle", "weight": 2}}
# fuse = (x + y + 2 z) / 4:  a (0 + 1 + 0) / 4 = .25      b (.25 + .25 + 2) / 4 = .625
#                            c (.5 + .75 + 2) / 4 = .8125 d (.75 + .5 + 1) / 4 = .5625
#                            e (1 + 0 + 1) / 4 = .5       -> a, e, d, b, c


def table(**over) -> ScoreTable:
    return ScoreTable(ids=IDS, columns={"x": X, "y": Y, "z": Z, "cluster": np.array([0, 0, 0, 1, 1]), **over})


def test_weighted_mean_of_rank_percentiles_hand_worked():
    sel = get_selector("fuse")(weights=WEIGHTS).select(table(), 3)
    assert sel.selected_ids == ["a", "d", "e"]
    assert sel.rank.tolist() == [1, 4, 5, 3, 2]
    assert sel.reason[3] == "fuse=0.5625, rank 3 of 5, kept"
    assert sel.reason[1] == "fuse=0.625, rank 4 of 5, dropped"
    assert "fuse: x low (weight 1), y high (weight 1), z middle (weight 2); rank percentiles over the 5 " \
           "candidates" in sel.notes


def test_equal_weights_change_the_order():
    # (x + y + z) / 3: a 1/3, b 1.5/3, c 2.25/3, d 1.75/3, e 1.5/3 -> a, b (ties e: pool order), e, d, c
    sel = get_selector("fuse")(weights={"x": "low", "y": "high", "z": "middle"}).select(table(), 2)
    assert sel.rank.tolist() == [1, 2, 5, 4, 3]
    assert sel.selected_ids == ["a", "b"]  # with z weighing 2, b (.625) falls behind e and d


def test_within_clusters():
    # clusters a-c / d-e, budget 3 -> 1.8 / 1.2 -> 2 / 1: a (.25), b (.625); e (.5)
    sel = get_selector("fuse")(weights=WEIGHTS, within_clusters=True).select(table(), 3)
    assert sel.selected_ids == ["a", "b", "e"]
    assert sel.reason[4] == "cluster 1: fuse=0.5, rank 1 of 2, kept"


def test_nan_in_any_signal_excludes_the_row_naming_the_signal():
    y = Y.copy()
    y[1] = np.nan
    sel = get_selector("fuse")(weights=WEIGHTS).select(table(y=y), 2)
    assert sel.reason[1] == "excluded: signal 'y' is NaN" and sel.rank[1] == -1
    # Over a, c, d, e: x .0 .33 .67 1; y 1 .67 .33 0; z (ranks 2 4 1 3, centre 2.5) .33 1 1 .33
    # -> a (0 + 1 + .67) / 4 = .42, c .75, d .75, e .42
    assert sel.selected_ids == ["a", "e"]
    inf = X.copy()
    inf[0] = np.inf
    sel = get_selector("fuse")(weights=WEIGHTS).select(table(x=inf), 2)
    assert sel.reason[0] == "excluded: signal 'x' is inf"


def test_ties_share_their_average_rank():
    assert average_rank(np.array([2.0, 1.0, 2.0, 2.0, 0.5])).tolist() == [4.0, 2.0, 4.0, 4.0, 1.0]
    np.testing.assert_allclose(rank_percentile(np.array([1.0, 1.0, 3.0]), "low"), [0.25, 0.25, 1.0])
    np.testing.assert_allclose(rank_percentile(np.array([1.0, 1.0, 3.0]), "high"), [0.75, 0.75, 0.0])
    assert rank_percentile(np.array([7.0]), "middle").tolist() == [0.0]


@pytest.mark.parametrize("weights, match", [
    (None, "fuse needs weights"),
    ({}, "fuse needs weights"),
    ({"x": "up"}, "direction of 'x' must be one of"),
    ({"x": {"weight": 2}}, "takes direction"),
    ({"x": {"direction": "low", "wieght": 2}}, "takes direction"),
    ({"x": {"direction": "low", "weight": 0}}, "weight of 'x' must be a number > 0"),
    ({"x": {"direction": "low", "weight": True}}, "weight of 'x' must be a number > 0"),
])
def test_bad_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        get_selector("fuse")(weights=weights)


def test_params_keep_the_mapping_as_given():
    sel = get_selector("fuse")(weights=WEIGHTS)
    assert sel.get_params()["weights"] == WEIGHTS
    assert sel.get_params()["weights"] is not WEIGHTS
