"""Seeded k-means: determinism, quality against scikit-learn, edge cases (proxysel.cluster)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from proxysel.cluster import kmeans, nearest_centroid

HAS_FAISS = importlib.util.find_spec("faiss") is not None


def blobs(n=4000, k=20, d=16, seed=0, spread=4.0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * spread
    truth = rng.integers(0, k, n)
    x = (centres[truth] + rng.standard_normal((n, d))).astype(np.float32)
    return x, truth


def inertia(x, labels):
    centres = np.stack([x[labels == c].mean(0) for c in np.unique(labels)])
    return float(nearest_centroid(x, centres)[1].mean())


BACKENDS = ["numpy", "sklearn"] + (["faiss"] if HAS_FAISS else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_input_and_seed_same_labels(backend):
    x, _ = blobs()
    first = kmeans(x, 20, seed=5, backend=backend)
    for _ in range(3):
        assert np.array_equal(kmeans(x, 20, seed=5, backend=backend), first)
    assert first.dtype == np.int64 and first.shape == (len(x),)


def test_same_labels_with_subsampled_training():
    x, _ = blobs(n=6000)
    a = kmeans(x, 20, seed=1, max_points_per_centroid=50)  # trains on 1000 rows
    b = kmeans(x, 20, seed=1, max_points_per_centroid=50)
    assert np.array_equal(a, b)


def test_auto_is_numpy_whatever_is_installed():
    x, _ = blobs(n=500, k=5)
    assert np.array_equal(kmeans(x, 5, seed=2), kmeans(x, 5, seed=2, backend="numpy"))


def test_labels_are_numbered_by_first_appearance():
    x, _ = blobs(n=1000, k=8)
    labels = kmeans(x, 8, seed=0)
    _, first = np.unique(labels, return_index=True)
    assert labels[np.sort(first)].tolist() == list(range(len(first)))


def test_different_seed_can_differ_but_recovers_blobs():
    x, truth = blobs(n=3000, k=10, spread=10.0)
    for seed in (0, 1):
        labels = kmeans(x, 10, seed=seed)
        # Well separated blobs: every true blob maps to exactly one cluster.
        for t in range(10):
            assert len(np.unique(labels[truth == t])) == 1


def test_quality_close_to_sklearn():
    x, _ = blobs(n=5000, k=30, spread=3.0)
    ours = np.mean([inertia(x, kmeans(x, 30, seed=s)) for s in range(3)])
    ref = np.mean([inertia(x, kmeans(x, 30, seed=s, backend="sklearn")) for s in range(3)])
    assert ours < 1.1 * ref


def test_k_larger_than_n_is_lowered_with_a_warning():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    with pytest.warns(UserWarning, match="k=10 is larger than the 6 rows; using k=6"):
        labels = kmeans(x, 10, seed=0)
    assert sorted(labels.tolist()) == list(range(6))


def test_k_one_and_identical_rows():
    x = np.ones((50, 3), dtype=np.float32)
    assert (kmeans(x, 1, seed=0) == 0).all()
    assert (kmeans(x, 4, seed=0) == 0).all()  # all rows identical: one non-empty cluster


@pytest.mark.parametrize("bad, match", [
    (dict(k=0), "k must be an integer >= 1"),
    (dict(k=2.5), "k must be an integer >= 1"),
    (dict(backend="cuml"), "backend must be one of"),
    (dict(n_iter=0), "n_iter must be an integer >= 1"),
])
def test_bad_arguments(bad, match):
    args = dict(x=np.ones((5, 2), dtype=np.float32), k=2, seed=0) | bad
    with pytest.raises(ValueError, match=match):
        kmeans(**args)


def test_nan_input_is_rejected():
    x = np.ones((5, 2), dtype=np.float32)
    x[2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        kmeans(x, 2, seed=0)


def test_generator_seed_is_accepted():
    x, _ = blobs(n=800, k=6)
    a = kmeans(x, 6, seed=np.random.default_rng(4))
    b = kmeans(x, 6, seed=np.random.default_rng(4))
    assert np.array_equal(a, b)


def test_nearest_centroid_ties_go_to_lower_index():
    x = np.array([[0.0, 0.0], [2.0, 0.0]], dtype=np.float32)
    c = np.array([[1.0, 1.0], [1.0, -1.0]], dtype=np.float32)  # equidistant from both rows
    labels, dist = nearest_centroid(x, c)
    assert labels.tolist() == [0, 0]
    np.testing.assert_allclose(dist, [2.0, 2.0])


def test_faiss_backend_missing_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    x, _ = blobs(n=100, k=3)
    with pytest.raises(ImportError, match=r"pip install 'proxysel\[faiss\]'"):
        kmeans(x, 3, seed=0, backend="faiss")
    # the default never needs it
    assert kmeans(x, 3, seed=0).shape == (100,)


def test_numpy_backend_does_not_depend_on_the_thread_count():
    from threadpoolctl import threadpool_limits

    x, _ = blobs(n=5000, k=25, d=32, spread=2.0)
    default = kmeans(x, 25, seed=3)
    with threadpool_limits(limits=1):
        single = kmeans(x, 25, seed=3)
    assert np.array_equal(default, single)
