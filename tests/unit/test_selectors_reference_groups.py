"""``cluster_by: reference``: every pool row joins the reference group whose centroid is nearest
(``cluster.nearest_group``), and a ranking selector splits its budget over those groups; hand-worked
assignments, quotas and selections, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from proxysel.cluster import nearest_group
from proxysel.options import FieldError
from proxysel.selectors import ScoreTable, get_selector

# Group a: e1 and (0.8, 0.6); its centroid is (1.8, 0.6) normalised = (0.949, 0.316). Group b: e2.
REF = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
REF_GROUPS = np.array(["a", "a", "b"], dtype=object)
POOL = np.array([
    # cosine to a's centroid / to b's
    [1.0, 0.1],   # 0.976 / 0.100 -> a
    [0.1, 1.0],   # 0.409 / 0.995 -> b
    [1.0, 1.0],   # 0.894 / 0.707 -> a
    [0.3, 1.0],   # 0.575 / 0.958 -> b
    [10.0, 1.0],  # as row 0: the norm does not matter -> a
    [2.0, 1.0],   # 0.990 / 0.447 -> a
], dtype=np.float32)
GROUP = ["a", "b", "a", "b", "a", "a"]
IDS = [f"p{i}" for i in range(6)]
PPL = np.array([5.0, 1.0, 2.0, 3.0, 4.0, 1.5])


def table(reference: ScoreTable | None | str = "default") -> ScoreTable:
    if reference == "default":
        reference = ScoreTable(ids=["r0", "r1", "r2"], columns={"embedding": REF, "group": REF_GROUPS})
    t = ScoreTable(ids=IDS, columns={"embedding": POOL, "ppl": PPL})
    t.reference = reference
    return t


def test_nearest_group_is_the_nearest_centroid_by_cosine():
    labels, names = nearest_group(POOL, REF, REF_GROUPS)
    assert names == ["a", "b"]
    assert [names[i] for i in labels] == GROUP


def test_a_centroid_is_the_mean_of_unit_rows():
    # b's two rows, unnormalised: (0, 100) and (1, 0) average to (0.5, 0.5) once made unit, so
    # (1, 0.9) is nearer b than a = (1, -1)/sqrt(2); averaging the raw rows would give (0.5, 50)
    ref = np.array([[1.0, -1.0], [0.0, 100.0], [1.0, 0.0]], dtype=np.float32)
    labels, names = nearest_group(np.array([[1.0, 0.9]], dtype=np.float32), ref, ["a", "b", "b"])
    assert names[labels[0]] == "b"


def test_top_within_reference_groups_in_square_root_quotas():
    # group a: p0, p2, p4, p5 (4 rows); group b: p1, p3 (2). Budget 3 with size_power 0.5:
    # 3 * 2 / (2 + 1.414) = 1.757 and 1.243 -> floors 1, 1, the larger remainder (a) gets the third.
    # Lowest ppl first: a keeps p5 (1.5) and p2 (2.0), b keeps p1 (1.0).
    sel = get_selector("top")(signal="ppl", order="low", within_clusters=True, cluster_by="reference",
                              size_power=0.5).select(table(), 3)
    assert sel.selected_ids == ["p1", "p2", "p5"]
    assert any("groups from the reference set" in n and "0 a (4), 1 b (2)" in n for n in sel.notes)
    reasons = dict(zip(IDS, sel.reason))
    assert reasons["p4"] == "group 'a': ppl=4, rank 3 of 4, dropped"
    assert reasons["p1"] == "group 'b': ppl=1, rank 1 of 2, kept"


def test_proportional_quotas_and_random_draws_stay_inside_groups():
    # proportional, budget 3: 4 * 3 / 6 = 2 for a, 1 for b; cluster_random's default K (k-means)
    # is dropped, a K given is refused (below)
    sel = get_selector("cluster_random")(cluster_by="reference").select(table(), 3, seed=7)
    picked = [GROUP[IDS.index(i)] for i in sel.selected_ids]
    assert sorted(picked) == ["a", "a", "b"]


def test_needs_reference_only_when_it_clusters_by_the_reference():
    assert get_selector("top")(signal="ppl", within_clusters=True, cluster_by="reference").needs_reference
    assert not get_selector("top")(signal="ppl", within_clusters=True, clusters=4).needs_reference
    assert get_selector("top")(signal="ppl", within_clusters=True,
                               cluster_by="reference").reads() == ("ppl", "embedding")


@pytest.mark.parametrize("params, field", [
    ({"cluster_by": "reference"}, "cluster_by"),  # no within_clusters
    ({"cluster_by": "reference", "within_clusters": True, "clusters": 5}, "clusters"),
])
def test_misplaced_cluster_by_is_a_field_error(params, field):
    with pytest.raises(FieldError) as e:
        get_selector("top")(signal="ppl", **params)
    assert e.value.name == field


@pytest.mark.parametrize("reference, message", [
    (None, "takes its groups from a reference set"),
    (ScoreTable(ids=["r0"], columns={"rds": REF[:1], "group": REF_GROUPS[:1]}),
     "reference set has no 'embedding' vectors; embed it"),
    (ScoreTable(ids=["r0", "r1"], columns={"embedding": REF[:2], "group": REF_GROUPS[:2]}),
     "two or more groups"),
    (ScoreTable(ids=["r0", "r2"], columns={"embedding": np.ones((2, 3), dtype=np.float32),
                                           "group": REF_GROUPS[1:]}),
     r"shape \(2, 3\), the pool's \(6, 2\)"),
])
def test_reference_problems_are_clear_errors(reference, message):
    with pytest.raises(ValueError, match=message):
        get_selector("top")(signal="ppl", within_clusters=True, cluster_by="reference").select(
            table(reference), 3)
