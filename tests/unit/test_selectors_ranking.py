"""Hand-worked selections with exact expected ids: random, top, lp, lp_app, ask_llm, ifd, density,
and the generic ``within_clusters`` option."""

from __future__ import annotations

import numpy as np
import pytest

from proxysel.selectors import ScoreTable, get_selector
from proxysel.selectors.base import split_rngs

IDS = list("abcdefghij")
#                 a    b    c    d    e    f    g    h    i    j
CLUSTER = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])
LP = np.array([0.5, 0.1, 0.9, 0.2, 0.1, 0.7, 0.4, 0.25, 0.6, 0.8])


def table(**columns) -> ScoreTable:
    return ScoreTable(ids=IDS, columns={"cluster": CLUSTER, **columns})


def ids_of(sel) -> list[str]:
    return sel.selected_ids


# ------------------------------------------------------------------------------------- lp

def test_lp_clustered_exact_budget():
    # Sizes 6/3/1, budget 3: shares 1.8/0.9/0.3 -> floors 1/0/0, the two left go to .9 and .8.
    # Cluster 0 lowest first: b(0.1), e(0.1, tie -> pool order), d(0.2) ... -> b, e.
    # Cluster 1: h(0.25) -> h.   Cluster 2: quota 0.
    sel = get_selector("lp")(clusters=None).select(table(lp=LP), 0.3)
    assert ids_of(sel) == ["b", "e", "h"]
    assert sel.rank.tolist() == [4, 1, 6, 3, 2, 5, 2, 1, 3, 1]
    assert sel.cluster.tolist() == CLUSTER.tolist()
    assert sel.reason[1] == "cluster 0: lp=0.1, rank 1 of 6, kept"
    assert sel.reason[9] == "cluster 2: lp=0.8, rank 1 of 1, dropped"
    assert sel.budget == 3 and sel.method == "lp"


def test_lp_official_rounding():
    # round(100 / 30) = 3 -> ceil(6/3), ceil(3/3), ceil(1/3) = 2, 1, 1: four rows for "30%".
    sel = get_selector("lp")(clusters=None, rounding="official").select(table(lp=LP), 0.3)
    assert ids_of(sel) == ["b", "e", "h", "j"]
    assert sel.budget == 4
    assert any("official rounding kept 4 for a budget of 3" in n for n in sel.notes)


def test_lp_global_cut_differs_from_clustered():
    sel = get_selector("lp")(within_clusters=False).select(table(lp=LP), 3)
    assert ids_of(sel) == ["b", "d", "e"]
    assert (sel.cluster == -1).all()
    assert sel.reason[3] == "lp=0.2, rank 3 of 10, kept"


def test_lp_app_reads_its_own_column():
    lp_app = LP[::-1].copy()  # a b c ... -> 0.8 0.6 0.25 0.4 0.7 0.1 0.2 0.9 0.1 0.5
    sel = get_selector("lp_app")(clusters=None).select(table(lp=LP, lp_app=lp_app), 0.3)
    # cluster 0 (a..f): f(0.1), c(0.25); cluster 1 (g, h, i): i(0.1)
    assert ids_of(sel) == ["c", "f", "i"]


def test_lp_needs_clusters():
    t = ScoreTable(ids=IDS, columns={"lp": LP})
    with pytest.raises(ValueError, match="no 'cluster' column; pass clusters=K"):
        get_selector("lp")(clusters=None).select(t, 3)


def test_lp_runs_kmeans_on_embeddings_when_given_k():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [50.0, 50.0]])
    emb = np.vstack([centres[0] + rng.normal(size=(6, 2)), centres[1] + rng.normal(size=(4, 2))])
    t = ScoreTable(ids=IDS, columns={"lp": LP, "embedding": emb.astype(np.float32)})
    sel = get_selector("lp")(clusters=2).select(t, 0.5, seed=0)
    assert sel.cluster.tolist() == [0] * 6 + [1] * 4
    # sizes 6/4, budget 5 -> 3/2: b, e, d and j... cluster 1 is g h i j: h(0.25), g(0.4)
    assert ids_of(sel) == ["b", "d", "e", "g", "h"]


def test_nan_and_truncated_rows_are_excluded():
    lp = LP.copy()
    lp[1] = np.nan  # b
    lp[7] = np.inf  # h
    t = ScoreTable(ids=IDS, columns={"lp": lp, "cluster": CLUSTER},
                   truncated=np.array([False] * 4 + [True] + [False] * 5))  # e
    sel = get_selector("lp")(clusters=None).select(t, 3)
    assert sel.reason[1] == "excluded: signal is NaN"
    assert sel.reason[7] == "excluded: signal is inf"
    assert sel.reason[4] == "excluded: truncated"
    assert sel.rank[[1, 4, 7]].tolist() == [-1, -1, -1]
    # Candidates: cluster 0 = a c d f, cluster 1 = g i, cluster 2 = j. Shares of 3: 1.71, 0.86,
    # 0.43 -> floors 1/0/0; the two left go to the remainders .86 and .71 -> quotas 2/1/0:
    # cluster 0 -> d(0.2), a(0.5); cluster 1 -> g(0.4).
    assert ids_of(sel) == ["a", "d", "g"]
    with_truncated = get_selector("lp")(clusters=None, include_truncated=True).select(t, 3)
    assert "e" in ids_of(with_truncated)


def test_all_excluded_is_a_clear_error():
    t = ScoreTable(ids=IDS, columns={"lp": np.full(10, np.nan), "cluster": CLUSTER})
    with pytest.raises(ValueError, match="no candidates: all 10 rows are excluded"):
        get_selector("lp")(clusters=None).select(t, 3)


def test_budget_above_candidates_is_a_clear_error():
    lp = LP.copy()
    lp[:8] = np.nan
    with pytest.raises(ValueError, match="budget 3 is larger than the 2 candidates"):
        get_selector("lp")(clusters=None).select(table(lp=lp), 3)


# -------------------------------------------------------------------------------- top / ask

PPL = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 8.0, 7.0, 6.0, 10.0])


@pytest.mark.parametrize("order, k, expected", [
    ("low", 3, ["b", "d", "e"]),
    ("high", 3, ["f", "g", "j"]),
    # sorted: b d e c a i h g f j; a band of k starts at (10 - k) // 2
    ("middle", 4, ["a", "c", "h", "i"]),  # sorted positions 3..6: c a i h
    ("middle", 3, ["a", "c", "i"]),       # positions 3..5: the tie 3 vs 6 goes to the lower side
])
def test_top_orders(order, k, expected):
    sel = get_selector("top")(signal="ppl", order=order).select(table(ppl=PPL), k)
    assert ids_of(sel) == expected


def test_top_middle_is_the_sorted_band():
    rng = np.random.default_rng(1)
    for m in range(1, 30):
        values = rng.permutation(m).astype(float)
        ids = [f"x{i}" for i in range(m)]
        for k in range(1, m + 1):
            sel = get_selector("top")(signal="s", order="middle").select(
                ScoreTable(ids=ids, columns={"s": values}), k)
            start = (m - k) // 2
            band = set(np.argsort(values, kind="stable")[start:start + k].tolist())
            assert set(np.flatnonzero(sel.selected).tolist()) == band


def test_top_ties_keep_pool_order():
    t = ScoreTable(ids=IDS, columns={"s": np.zeros(10)})
    assert ids_of(get_selector("top")(signal="s", order="high").select(t, 3)) == ["a", "b", "c"]
    assert ids_of(get_selector("top")(signal="s", order="low").select(t, 3)) == ["a", "b", "c"]


def test_top_bad_order():
    with pytest.raises(ValueError, match="order 'median' is not one of low, high, middle"):
        get_selector("top")(order="median")


def test_ask_llm_keeps_highest():
    score = np.array([0.1, 0.9, 0.3, 0.9, 0.5, 0.2, 0.8, 0.05, 0.6, 0.7])
    sel = get_selector("ask_llm")().select(table(ask_llm=score), 3)
    assert ids_of(sel) == ["b", "d", "g"]
    assert sel.rank[[1, 3, 6]].tolist() == [1, 2, 3]


def test_within_clusters_applies_to_any_ranking_selector():
    score = np.array([0.1, 0.9, 0.3, 0.9, 0.5, 0.2, 0.8, 0.05, 0.6, 0.7])
    sel = get_selector("ask_llm")(within_clusters=True).select(table(ask_llm=score), 0.3)
    # quotas 2/1/0 as in the lp test: cluster 0 -> b, d; cluster 1 -> g
    assert ids_of(sel) == ["b", "d", "g"]
    assert sel.reason[6] == "cluster 1: ask_llm=0.8, rank 1 of 3, kept"
    sel = get_selector("top")(signal="ppl", order="high", within_clusters=True).select(table(ppl=PPL), 0.3)
    assert ids_of(sel) == ["a", "f", "g"]  # cluster 0: f(9), a(5); cluster 1: g(8)


def test_size_power_sets_the_cluster_quotas():
    # clusters of 6, 3, 1 rows, budget 6. Equal quotas: 2 each, j's cluster is taken whole, the 5
    # left split 3/2 (the tie goes to the earlier cluster); then the lowest lp inside each cluster
    sel = get_selector("lp")(clusters=None, size_power=0.0).select(table(lp=LP), 6)
    assert np.bincount(CLUSTER[sel.selected], minlength=3).tolist() == [3, 2, 1]
    assert ids_of(sel) == ["b", "d", "e", "g", "h", "j"]
    # proportional (the default) gives 4/2/0 (largest remainders: 3.6, 1.8, 0.6)
    sel = get_selector("lp")(clusters=None).select(table(lp=LP), 6)
    assert np.bincount(CLUSTER[sel.selected], minlength=3).tolist() == [4, 2, 0]
    sel = get_selector("random")(within_clusters=True, size_power=0.5).select(table(), 6, seed=3)
    # sqrt weights 2.45, 1.73, 1: shares 2.8, 2.0, 1.2 -> 1 whole, then 3.0 and 2.0
    assert np.bincount(CLUSTER[sel.selected], minlength=3).tolist() == [3, 2, 1]


def test_size_power_needs_clusters_and_exact_rounding():
    with pytest.raises(ValueError, match="size_power.*only applies with within_clusters=True"):
        get_selector("random")(size_power=0.5)
    with pytest.raises(ValueError, match="size_power.*official rounding is proportional"):
        get_selector("lp")(size_power=0.5, rounding="official")
    with pytest.raises(ValueError, match="size_power.*without replacement only"):
        get_selector("density")(within_clusters=True, with_replacement=True, size_power=0.0)
    with pytest.raises(ValueError, match="size_power"):
        get_selector("random")(within_clusters=True, size_power=2.0)


# ------------------------------------------------------------------------------------- ifd

IFD = np.array([0.5, 1.2, 0.9, 0.7, 1.0, np.nan, 0.3, 0.95, 0.2, 2.0])


def test_ifd_drops_at_or_above_one_then_highest():
    sel = get_selector("ifd")().select(table(ifd=IFD), 3)
    assert ids_of(sel) == ["c", "d", "h"]  # 0.9, 0.7, 0.95; b (1.2), e (1.0), j (2.0) dropped
    assert sel.reason[4] == "ifd=1 >= 1, dropped"
    assert sel.reason[5] == "excluded: signal is NaN"
    assert sel.rank[[7, 2, 3, 0]].tolist() == [1, 2, 3, 4]


def test_ifd_too_few_left_is_an_error_or_kept_short():
    with pytest.raises(ValueError, match=r"budget 7 is larger than the 6 candidates .*3 dropped with ifd"):
        get_selector("ifd")().select(table(ifd=IFD), 7)
    sel = get_selector("ifd")(on_short="keep").select(table(ifd=IFD), 7)
    assert ids_of(sel) == ["a", "c", "d", "g", "h", "i"]
    assert sel.budget == 6 and "budget lowered to the 6 candidates" in sel.notes


def test_ifd_loss_variant():
    sel = get_selector("ifd")(signal="ifd_loss").select(table(ifd_loss=IFD), 2)
    assert ids_of(sel) == ["c", "h"]


# ----------------------------------------------------------------------- top with a threshold

def test_top_threshold_drops_outside_the_range_then_ranks():
    # LP: a .5 b .1 c .9 d .2 e .1 f .7 g .4 h .25 i .6 j .8; in [0.2, 0.7]: a d f g h i
    sel = get_selector("top")(signal="lp", order="high", at_least=0.2, at_most=0.7).select(table(lp=LP), 3)
    assert ids_of(sel) == ["a", "f", "i"]  # .5 .7 .6: the highest that pass; c (.9), j (.8) are out
    assert sel.reason[2] == "lp=0.9 outside at_least 0.2 and at_most 0.7, dropped"
    assert sel.reason[1] == "lp=0.1 outside at_least 0.2 and at_most 0.7, dropped"
    assert sel.rank[[5, 8, 0, 6, 7, 3]].tolist() == [1, 2, 3, 4, 5, 6]
    one_sided = get_selector("top")(signal="lp", order="low", at_least=0.3).select(table(lp=LP), 2)
    assert ids_of(one_sided) == ["a", "g"] and one_sided.reason[7] == "lp=0.25 outside at_least 0.3, dropped"


def test_top_threshold_too_few_left_is_an_error_or_kept_short():
    top = get_selector("top")
    with pytest.raises(ValueError, match=r"budget 7 is larger than the 6 candidates .*4 dropped outside"):
        top(signal="lp", at_least=0.2, at_most=0.7).select(table(lp=LP), 7)
    sel = top(signal="lp", at_least=0.2, at_most=0.7, on_short="keep").select(table(lp=LP), 1.0)
    assert ids_of(sel) == ["a", "d", "f", "g", "h", "i"] and sel.budget == 6
    assert "budget lowered to the 6 candidates" in sel.notes


def test_top_threshold_options_are_checked():
    from proxysel.options import FieldError

    with pytest.raises(FieldError, match="at_least"):
        get_selector("top")(signal="lp", at_least=0.8, at_most=0.2)


# ------------------------------------------------------------------------ random / density

def test_random_exact_ids_from_the_documented_stream():
    sel = get_selector("random")().select(table(), 4, seed=7)
    perm = split_rngs(7)[1].permutation(10)  # the selection stream of seed 7
    assert sel.selected_ids == [IDS[i] for i in sorted(perm[:4])]
    assert sel.rank[perm].tolist() == list(range(1, 11))
    assert sel.reason[perm[0]] == "random order, rank 1 of 10, kept"


def test_random_within_clusters_is_cluster_random():
    sel = get_selector("random")(within_clusters=True).select(table(), 0.3, seed=1)
    counts = np.bincount(CLUSTER[sel.selected], minlength=3)
    assert counts.tolist() == [2, 1, 0]


def test_density_exact_ids_from_the_documented_stream():
    density = np.array([0.5, 0.5, 0.01, 0.5, 0.02, 0.5, 0.5, 0.5, 0.5, 0.03])
    sel = get_selector("density")().select(table(density=density), 3, seed=0)
    keys = -np.log(density) + split_rngs(0)[1].gumbel(size=10)
    expected = np.sort(np.argsort(-keys, kind="stable")[:3])
    assert sel.selected_ids == [IDS[i] for i in expected]
    assert sel.selected_ids == ["c", "e", "j"]  # the three sparse ones, for this seed


def test_density_with_replacement_counts_draws():
    density = np.array([0.5, 0.5, 0.01, 0.5, 0.02, 0.5, 0.5, 0.5, 0.5, 0.03])
    sel = get_selector("density")(with_replacement=True).select(table(density=density), 50, seed=0)
    assert sel.count.sum() == 50
    assert sel.selected.tolist() == (sel.count > 0).tolist()
    assert sel.count[[2, 4, 9]].sum() > 40  # 1/density puts ~92% of the mass on c, e, j
    first = sel.rank[sel.selected]
    assert sorted(first.tolist()) == list(range(1, sel.n_selected + 1))


def test_density_rejects_non_positive_scores():
    with pytest.raises(ValueError, match="scores must be > 0"):
        get_selector("density")().select(table(density=np.zeros(10)), 2)


def test_cluster_column_with_missing_labels():
    cluster = CLUSTER.astype(float)
    cluster[9] = np.nan  # j: a parquet null
    lp = LP.copy()
    with pytest.raises(ValueError, match="no label .* for 1 candidate rows"):
        get_selector("lp")(clusters=None).select(
            ScoreTable(ids=IDS, columns={"lp": lp, "cluster": cluster}), 3)
    lp[9] = np.nan  # j is not a candidate anyway: fine, and reported as cluster -1
    sel = get_selector("lp")(clusters=None).select(
        ScoreTable(ids=IDS, columns={"lp": lp, "cluster": cluster}), 3)
    assert sel.cluster[9] == -1 and ids_of(sel) == ["b", "e", "h"]


def test_clusters_without_within_clusters_is_an_error():
    with pytest.raises(ValueError, match="only applies with within_clusters=True"):
        get_selector("top")(clusters=5)


def test_two_dimensional_signal_is_an_error():
    t = ScoreTable(ids=IDS, columns={"trajectory": np.ones((10, 3))})
    with pytest.raises(ValueError, match="must be 1-D"):
        get_selector("top")(signal="trajectory").select(t, 2)
