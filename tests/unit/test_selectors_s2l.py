"""S2L against worked examples of the official schedules/s2l.py logic."""

from __future__ import annotations

import numpy as np
import pytest

from proxysel.selectors import ScoreTable, get_selector

# Clusters A(1) B(2) set aside; C(3) D(5) E(10) sampled smallest first. 21 rows.
SIZES = {10: 1, 11: 2, 20: 3, 30: 5, 40: 10}
LABELS = np.concatenate([np.full(s, c) for c, s in SIZES.items()])
IDS = [f"r{i:02d}" for i in range(len(LABELS))]


def table(**extra) -> ScoreTable:
    return ScoreTable(ids=IDS, columns={"cluster": LABELS, **extra})


def kept_per_cluster(sel) -> dict[int, int]:
    return {c: int(sel.selected[LABELS == c].sum()) for c in SIZES}


def test_smallest_first_quotas():
    # budget 12: C quota 12//3 = 4 >= 3 -> whole (9 left); D 9//2 = 4 < 5 -> draw 4 (5 left);
    # E 5//1 = 5 -> draw 5. Nothing left for the set-aside A and B.
    # (Largest first would give E 4, D 4, C 3 and one row from A/B.)
    sel = get_selector("s2l")(clusters=None).select(table(), 12, seed=0)
    assert kept_per_cluster(sel) == {10: 0, 11: 0, 20: 3, 30: 4, 40: 5}
    assert sel.n_selected == 12
    assert sel.reason[3] == "cluster 20 (3 rows <= quota 4): taken whole, kept"
    assert sel.reason[0] == "cluster 10 (<= 2 rows, set aside): no remainder, dropped"
    d_reasons = [sel.reason[i] for i in np.flatnonzero(LABELS == 30)]
    assert sum(r.endswith("kept") for r in d_reasons) == 4
    assert all(r.startswith("cluster 30 (5 rows, quota 4): draw ") for r in d_reasons)


def test_set_aside_clusters_fill_only_the_remainder():
    # budget 20: C 20//3 = 6 -> whole (17 left); D 17//2 = 8 -> whole (12); E 12 -> whole (2);
    # the last 2 are drawn from the 3 rows of A and B together.
    sel = get_selector("s2l")(clusters=None).select(table(), 20, seed=0)
    counts = kept_per_cluster(sel)
    assert counts[20] == 3 and counts[30] == 5 and counts[40] == 10
    assert counts[10] + counts[11] == 2
    pool = np.flatnonzero(LABELS <= 11)
    assert sorted(sel.rank[pool].tolist()) == [1, 2, 3]
    assert all("remainder draw" in sel.reason[i] for i in pool)


def test_draws_are_uniform_and_seeded():
    sel_a = get_selector("s2l")(clusters=None).select(table(), 12, seed=3)
    sel_b = get_selector("s2l")(clusters=None).select(table(), 12, seed=3)
    assert sel_a.selected_ids == sel_b.selected_ids
    hits = np.zeros(len(IDS))
    for seed in range(300):
        hits += get_selector("s2l")(clusters=None).select(table(), 12, seed=seed).selected
    e_rate = hits[LABELS == 40] / 300  # 5 of 10 each time: every row about half the time
    assert np.all(np.abs(e_rate - 0.5) < 0.12)


def test_stratify_by_source_smallest_first():
    # Source "x" (rows of A, B, C: 6 rows) and "y" (D, E: 15 rows). Budget 10: x first,
    # quota 10 // 2 = 5 < 6 -> clustered: C 5//1 = 5 >= 3 -> whole, 2 from A/B; y gets 5:
    # D 5//2 = 2, E 3.
    source = np.array(["x"] * 6 + ["y"] * 15, dtype=object)
    sel = get_selector("s2l")(clusters=None, stratify="source").select(table(source=source), 10, seed=0)
    counts = kept_per_cluster(sel)
    assert (counts[20], counts[30], counts[40], counts[10] + counts[11]) == (3, 2, 3, 2)
    assert sel.n_selected == 10
    assert sel.reason[20].startswith("source 'y': cluster 40 (10 rows, quota 3): draw ")


def test_stratify_small_source_taken_whole():
    source = np.array(["small"] * 3 + ["big"] * 18, dtype=object)
    sel = get_selector("s2l")(clusters=None, stratify="source").select(table(source=source), 10, seed=0)
    assert sel.selected[:3].all()
    assert sel.reason[0] == "source 'small': 3 rows <= quota 5: taken whole, kept"
    assert sel.n_selected == 10


def test_kmeans_on_trajectories():
    rng = np.random.default_rng(0)
    # Three groups of trajectories: fast learners, slow learners, never learned.
    shapes = np.array([[3.0, 1.0, 0.5, 0.2], [3.0, 2.5, 2.0, 1.8], [3.0, 3.0, 3.0, 3.0]])
    group = np.repeat([0, 1, 2], [30, 20, 10])
    traj = shapes[group] + 0.05 * rng.standard_normal((60, 4))
    t = ScoreTable(ids=[f"x{i}" for i in range(60)], columns={"trajectory": traj})
    sel = get_selector("s2l")(clusters=3).select(t, 15, seed=0)
    # k-means recovers the three groups; smallest first: 15//3 = 5 from each.
    for g in range(3):
        assert len(set(sel.cluster[group == g].tolist())) == 1
        assert sel.selected[group == g].sum() == 5
    again = get_selector("s2l")(clusters=3).select(t, 15, seed=0)
    assert again.selected_ids == sel.selected_ids


def test_kmeans_per_source_labels_are_unique():
    rng = np.random.default_rng(1)
    traj = rng.standard_normal((40, 3))
    source = np.array(["a"] * 20 + ["b"] * 20, dtype=object)
    t = ScoreTable(ids=[f"x{i}" for i in range(40)], columns={"trajectory": traj, "source": source})
    sel = get_selector("s2l")(clusters=4, stratify="source").select(t, 12, seed=0)
    assert set(sel.cluster[:20]).isdisjoint(set(sel.cluster[20:]))
    assert sel.n_selected == 12


def test_nan_trajectory_excluded():
    traj = np.ones((21, 3))
    traj[5, 1] = np.nan
    sel = get_selector("s2l")(clusters=2).select(table(trajectory=traj), 10, seed=0)
    assert sel.reason[5] == "excluded: signal is NaN" and not sel.selected[5]
    assert sel.n_selected == 10


def test_needs_clusters_or_cluster_column():
    t = ScoreTable(ids=IDS, columns={})
    with pytest.raises(ValueError, match="no column 'cluster'"):
        get_selector("s2l")(clusters=None).select(t, 3)


def test_stratify_auto_splits_by_source_when_the_table_has_it():
    """The default ``stratify: auto`` stratifies by the ``source`` column the selection stage fills when
    every record has a source (the official code always does); without one it does not."""
    rng = np.random.default_rng(0)
    n = 60
    traj = rng.standard_normal((n, 4))
    source = np.array(["small"] * 6 + ["big"] * 54, dtype=object)
    with_source = ScoreTable(ids=[f"x{i}" for i in range(n)], columns={"trajectory": traj, "source": source})
    auto = get_selector("s2l")(clusters=4).select(with_source, 12, seed=0)
    explicit = get_selector("s2l")(clusters=4, stratify="source").select(with_source, 12, seed=0)
    assert auto.selected.tolist() == explicit.selected.tolist()
    assert auto.selected[:6].sum() == 6  # the small source is taken whole: quota 12 // 2 = 6
    plain = ScoreTable(ids=with_source.ids, columns={"trajectory": traj})
    none = get_selector("s2l")(clusters=4, stratify=None).select(plain, 12, seed=0)
    assert (get_selector("s2l")(clusters=4).select(plain, 12, seed=0).selected.tolist()
            == none.selected.tolist())
