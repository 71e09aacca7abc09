"""The field's baselines as selectors, on hand-worked tables: ``longest`` (Zhao et al. 2024) and
``cluster_random`` (Small2Large's random-within-clusters, on the clusters lp/lp_app use)."""

from __future__ import annotations

import numpy as np
import pytest

from proxysel.selectors import ScoreTable, get_selector

IDS = list("abcdefghij")
#                          a  b  c   d  e  f   g  h  i  j
TOKENS = np.array([5, 9, 9, 2, 9, 7, 12, 1, 3, 7])
CLUSTER = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])


# ---------------------------------------------------------------------------------- longest


def test_longest_keeps_the_most_response_tokens_ties_in_pool_order():
    t = ScoreTable(ids=IDS, columns={"n_response_tokens": TOKENS})
    sel = get_selector("longest")().select(t, 4)
    # 12 (g), then the three 9s in pool order (b, c, e); then the 7s (f, j)
    assert sel.selected_ids == ["b", "c", "e", "g"]
    #                          a  b  c  d   e  f  g  h   i  j
    assert sel.rank.tolist() == [7, 2, 3, 9, 4, 5, 1, 10, 8, 6]
    assert sel.reason[6] == "n_response_tokens=12, rank 1 of 10, kept"
    assert sel.reason[9] == "n_response_tokens=7, rank 6 of 10, dropped"
    # a budget that cuts through a tie keeps the earlier rows
    assert get_selector("longest")().select(t, 3).selected_ids == ["b", "c", "g"]


def test_longest_within_clusters():
    t = ScoreTable(ids=IDS, columns={"n_response_tokens": TOKENS, "cluster": CLUSTER})
    # sizes 6/3/1, budget 5: shares 3/1.5/0.5 -> 3/1/0, the one left to the earlier .5 (cluster 1)
    # cluster 0 longest: b, c, e (9s); cluster 1: g (12), i (3)
    sel = get_selector("longest")(within_clusters=True).select(t, 5)
    assert sel.selected_ids == ["b", "c", "e", "g", "i"]


def test_longest_skips_truncated_rows_whatever_their_count():
    t = ScoreTable(ids=IDS, columns={"n_response_tokens": TOKENS},
                   truncated=np.array([False] * 6 + [True] + [False] * 3))
    sel = get_selector("longest")().select(t, 2)
    assert sel.selected_ids == ["b", "c"] and sel.reason[6] == "excluded: truncated"


def test_longest_needs_the_column():
    with pytest.raises(ValueError, match="no column 'n_response_tokens'"):
        get_selector("longest")().select(ScoreTable(ids=IDS, columns={"lp": np.zeros(10)}), 2)


# ------------------------------------------------------------------------------ cluster_random


def test_cluster_random_takes_each_clusters_proportional_share():
    t = ScoreTable(ids=IDS, columns={"cluster": CLUSTER})
    for seed in range(20):
        sel = get_selector("cluster_random")(clusters=None).select(t, 5, seed=seed)
        # sizes 6/3/1, budget 5 -> quotas 3/2/0 (see test_longest_within_clusters)
        assert [int(sel.selected[CLUSTER == c].sum()) for c in (0, 1, 2)] == [3, 2, 0]
        assert sel.cluster.tolist() == CLUSTER.tolist()
        # rank = draw order inside the cluster
        assert sorted(sel.rank[CLUSTER == 0].tolist()) == [1, 2, 3, 4, 5, 6]


def test_cluster_random_is_uniform_inside_a_cluster():
    # Over 600 seeds each member of cluster 0 should be kept 3/6 of the time, of cluster 1 2/3:
    # binomial sd sqrt(.25/600) = 0.02, so 0.08 is four sd.
    t = ScoreTable(ids=IDS, columns={"cluster": CLUSTER})
    kept = np.zeros(10)
    for seed in range(600):
        kept += get_selector("cluster_random")(clusters=None).select(t, 5, seed=seed).selected
    rate = kept / 600
    assert np.allclose(rate[:6], 0.5, atol=0.08) and np.allclose(rate[6:9], 2 / 3, atol=0.08)
    assert rate[9] == 0.0


def _embedded(n: int = 300, seed: int = 0) -> ScoreTable:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (6, 8))
    emb = (centres[rng.integers(0, 6, n)] + rng.normal(0, 1, (n, 8))).astype(np.float32)
    truncated = np.zeros(n, dtype=bool)
    truncated[::17] = True  # excluded by both, so both cluster the same candidates
    lp_app = rng.normal(0.5, 0.1, n)
    lp_app[truncated] = np.nan
    return ScoreTable(ids=[f"x{i:03d}" for i in range(n)], columns={"embedding": emb, "lp_app": lp_app},
                      truncated=truncated)


@pytest.mark.parametrize("seed", [0, 7, 123])
def test_cluster_random_gets_the_same_clusters_and_quotas_as_lp_app(seed):
    t = _embedded()
    lp = get_selector("lp_app")(clusters=8).select(t, 0.2, seed=seed)
    cr = get_selector("cluster_random")(clusters=8).select(t, 0.2, seed=seed)
    assert np.array_equal(lp.cluster, cr.cluster)
    assert len(np.unique(cr.cluster[cr.cluster >= 0])) == 8
    for c in range(8):
        members = cr.cluster == c
        assert cr.selected[members].sum() == lp.selected[members].sum()
    assert cr.n_selected == lp.n_selected == 60
    # but not the same examples: lp_app keeps the lowest lp_app, cluster_random draws
    assert not np.array_equal(lp.selected, cr.selected)
    # another seed gives other clusters to both, still the same ones
    other = get_selector("cluster_random")(clusters=8).select(t, 0.2, seed=seed + 1)
    other_lp = get_selector("lp_app")(clusters=8).select(t, 0.2, seed=seed + 1)
    assert np.array_equal(other.cluster, other_lp.cluster) and not np.array_equal(other.cluster, cr.cluster)


def test_cluster_random_declares_lp_apps_default_clusters():
    # The same k (100 k-means clusters over the embeddings) for both, or the comparison would not
    # isolate the signal; both selectors declare it in their Params.
    assert get_selector("cluster_random")().get_params() == get_selector("lp_app")().get_params()
    assert get_selector("lp_app")().get_params()["clusters"] == 100


def test_cluster_random_refuses_the_whole_pool():
    with pytest.raises(ValueError, match="use random for the whole pool"):
        get_selector("cluster_random")(within_clusters=False)
