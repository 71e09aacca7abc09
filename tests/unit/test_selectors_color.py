"""CoLoR-Filter selection: hand-worked, with and without the tau candidate set."""

from __future__ import annotations

import numpy as np
import pytest

from proxysel.selectors import ScoreTable, get_selector

IDS = list("abcdefgh")
#                  a     b     c    d     e    f     g     h
COLOR = np.array([0.3, -0.1, 0.9, 0.3, 0.5, 0.0, 0.7, np.nan])


def table() -> ScoreTable:
    return ScoreTable(ids=IDS, columns={"color": COLOR, "cluster": np.array([0, 0, 0, 0, 1, 1, 1, 1])})


def test_largest_reductions_first_ties_in_pool_order():
    # c .9, g .7, e .5, a .3, d .3 (tie: a first), f 0, b -.1; h is NaN
    sel = get_selector("color")().select(table(), 4)
    assert sel.selected_ids == ["a", "c", "e", "g"]
    assert sel.rank.tolist() == [4, 7, 1, 5, 3, 6, 2, -1]
    assert sel.reason[3] == "color=0.3, rank 5 of 7, dropped"
    assert sel.reason[7] == "excluded: signal is NaN"


def test_within_clusters():
    # sizes 4 (a-d) / 3 (e-g; h is NaN), budget 3 -> 1.71 / 1.29 -> 1 + 1, the last to .71: 2 / 1
    sel = get_selector("color")(within_clusters=True).select(table(), 3)
    assert sel.selected_ids == ["a", "c", "g"]


def test_tau_ranks_a_seeded_draw_of_tau_k_candidates():
    k, tau = 2, 2.0
    sel = get_selector("color")(tau=tau).select(table(), k, seed=11)
    # Rebuild the draw: the selection stream of split_rngs(11), 4 of the 7 candidates a-g.
    from proxysel.selectors.base import split_rngs

    _, rng = split_rngs(11)
    candidates = np.arange(7)
    drawn = np.sort(rng.choice(7, size=4, replace=False))
    best = drawn[np.argsort(-COLOR[candidates[drawn]], kind="stable")[:k]]
    assert sel.selected_ids == [IDS[i] for i in sorted(best)]
    assert (sel.rank[drawn] > 0).all() and sorted(sel.rank[drawn].tolist()) == [1, 2, 3, 4]
    undrawn = np.setdiff1d(candidates, drawn)
    assert all(sel.reason[i] == "not drawn into the tau candidate set (4 of 7), dropped" for i in undrawn)
    assert (sel.rank[undrawn] == -1).all()
    assert "tau=2.0: top 2 of 4 candidates drawn at random from 7" in sel.notes


def test_tau_is_deterministic_per_seed_and_varies_across_seeds():
    picks = {tuple(get_selector("color")(tau=3).select(table(), 2, seed=s).selected_ids) for s in range(12)}
    again = get_selector("color")(tau=3).select(table(), 2, seed=4).selected_ids
    assert get_selector("color")(tau=3).select(table(), 2, seed=4).selected_ids == again
    assert len(picks) > 1  # the draw matters: without tau every seed keeps c and g


def test_tau_above_the_candidates_ranks_them_all():
    sel = get_selector("color")(tau=4).select(table(), 2, seed=0)
    assert sel.selected_ids == ["c", "g"]
    assert any("every candidate is ranked" in n for n in sel.notes)


def test_tau_one_keeps_a_random_subset():
    # tau = 1: the candidate set is the budget itself, so the kept rows are a uniform draw.
    sel = get_selector("color")(tau=1).select(table(), 3, seed=5)
    assert sel.n_selected == 3 and sum(r.startswith("not drawn") for r in sel.reason) == 4


@pytest.mark.parametrize("tau", [0.5, 0, -1, True, float("nan"), "2"])
def test_bad_tau(tau):
    with pytest.raises(ValueError, match="tau must be "):
        get_selector("color")(tau=tau)
