"""Seeded, deterministic k-means for the clustered selectors (LP on embeddings, S2L on trajectories).

``kmeans(x, k, seed)`` returns one int64 label per row. The same input and seed give the same
labels on every call, which is what DESIGN.md section 6 needs ("the same inputs and seed give
identical selections"). Three backends:

* ``"numpy"`` (the default, and what ``"auto"`` means): Lloyd's algorithm written here. The
  centroid sums are a single-threaded sparse one-hot product that adds rows in row order, so the
  result does not depend on thread scheduling or count (tested); distances are float32 BLAS
  products, deterministic for a fixed machine and BLAS. Like faiss it trains on a seeded
  subsample of at most ``max_points_per_centroid * k`` rows, starts from greedy k-means++ seeds
  (on a smaller sample when k is large) and then assigns every row to its nearest centroid.
* ``"sklearn"``: ``sklearn.cluster.KMeans`` (k-means++ init, as the official LP ``clustering.py``)
  fitted on the same subsample with OpenMP limited to one thread. Its multi-threaded Lloyd step
  adds per-thread partial sums (``_k_means_lloyd.pyx``), so the result depends on the thread
  count: measured on 60k x 64, k=100, 1 vs 2 threads gave centroids differing by 1e-6 and one
  label. Slower than "numpy" for large k.
* ``"faiss"``: ``faiss.Kmeans`` (random init, as in the official S2L code) on the same subsample;
  optional: ``pip install 'proxysel[faiss]'``. Deterministic for a seed (tested when installed).

``"auto"`` deliberately does not switch to faiss when it happens to be installed: that would make
the selection depend on the environment. Labels are renumbered by first appearance in row order
(row 0 is in cluster 0), so they do not depend on a backend's internal centroid order.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["BACKENDS", "all_finite", "kmeans", "nearest_centroid", "nearest_group"]

BACKENDS = ("auto", "numpy", "sklearn", "faiss")
DEFAULT_BACKEND = "numpy"

# Rows per distance block: keeps the (chunk, k) float32 distance block near 64 MiB.
_BLOCK_ELEMENTS = 1 << 24
DEFAULT_POINTS_PER_CENTROID = 64
# k-means++ runs on a sample of max(_SEEDING_ROWS, 8 k) training rows: seeding is sequential over k,
# one pass over its sample per seed, so on the full sample it would cost more than all the Lloyd
# steps (k=1000 on 10k x 384: about 3 s).
_SEEDING_ROWS = 10_000


def kmeans(x: np.ndarray, k: int, seed: int | np.random.SeedSequence | np.random.Generator = 0,
           n_iter: int = 20, backend: str = "auto",
           max_points_per_centroid: int = DEFAULT_POINTS_PER_CENTROID) -> np.ndarray:
    """Cluster the rows of ``x`` into ``k`` groups with seeded k-means (L2).

    x:       float (n, d); row i belongs to example i. Must be finite.
    k:       number of clusters; a ``k`` larger than n is lowered to n with a warning.
    seed:    int, SeedSequence or Generator; the only source of randomness.
    n_iter:  Lloyd iterations (the official S2L code uses 20; the numpy backend stops early once
             no label changes).
    backend: "auto" (= "numpy"), "numpy", "sklearn" or "faiss"; see the module docstring.
    max_points_per_centroid: centroids are trained on a seeded sample of at most
             ``max_points_per_centroid * k`` rows (faiss's rule; its default is 256), then every
             row is assigned. 64 keeps k=1000 on 1M x 384 well within a minute on 2 cores; on
             100k x 384 synthetic embeddings (k=300) it costs 0.7% in inertia against training
             on every row (32: 1.3%, 128: 0.4%).

    Returns int64 (n,), labels in [0, k), renumbered by first appearance in row order.

    >>> x = np.array([[0.0, 0.0], [10.0, 10.0], [0.1, 0.0], [10.0, 10.1]])
    >>> kmeans(x, 2, seed=0).tolist()
    [0, 1, 0, 1]
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"kmeans: x must be 2-D (n, d), got shape {x.shape}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("kmeans: x has no rows")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"kmeans: k must be an integer >= 1, got {k!r}")
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"kmeans: n_iter must be an integer >= 1, got {n_iter!r}")
    if max_points_per_centroid < 1:
        raise ValueError(f"kmeans: max_points_per_centroid must be >= 1, got {max_points_per_centroid}")
    if not all_finite(x):
        raise ValueError("kmeans: x holds NaN or inf values; drop those rows first")
    k = int(k)
    if k > n:
        warnings.warn(f"kmeans: k={k} is larger than the {n} rows; using k={n}", stacklevel=2)
        k = n
    x = np.ascontiguousarray(x, dtype=np.float32)
    rng = np.random.default_rng(seed)
    if k == 1:
        return np.zeros(n, dtype=np.int64)

    # The training sample is drawn here, identically for every backend.
    n_train = min(n, max_points_per_centroid * k)
    train = np.sort(rng.choice(n, size=n_train, replace=False)) if n_train < n else None
    xt = x if train is None else x[train]

    backend = DEFAULT_BACKEND if backend == "auto" else backend
    if backend == "numpy":
        centroids = _lloyd(xt, k, rng, n_iter)
    elif backend == "sklearn":
        centroids = _sklearn_centroids(xt, k, rng, n_iter)
    else:
        centroids = _faiss_centroids(xt, k, rng, n_iter)
    labels, _ = nearest_centroid(x, centroids)
    return _renumber(labels)


def all_finite(x: np.ndarray) -> bool:
    """``np.isfinite(x).all()`` in row blocks, without a full-size boolean temporary."""
    step = max(1, _BLOCK_ELEMENTS // max(1, int(np.prod(x.shape[1:]))))
    return all(np.isfinite(x[i:i + step]).all() for i in range(0, x.shape[0], step))


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and squared L2 distance to the nearest centroid, for every row of ``x``.

    x: float32 (n, d); centroids: float (k, d). Returns (int64 (n,), float32 (n,)).
    Ties go to the lower centroid index. Works in row blocks so memory stays bounded.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    c_sq = np.einsum("ij,ij->i", c, c)
    neg2_ct = np.ascontiguousarray(-2.0 * c.T)  # (d, k): the product then needs one more pass
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float32)
    step = max(1, _BLOCK_ELEMENTS // max(1, c.shape[0]))
    for start in range(0, n, step):
        xb = x[start:start + step]
        # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 does not change the argmin.
        d = xb @ neg2_ct
        d += c_sq
        lb = np.argmin(d, axis=1)
        labels[start:start + step] = lb
        x_sq = np.einsum("ij,ij->i", xb, xb)
        dist[start:start + step] = np.maximum(d[np.arange(len(lb)), lb] + x_sq, 0.0)
    return labels, dist


def nearest_group(x: np.ndarray, reference: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The reference group nearest to every row of ``x``, by cosine similarity to the group's centroid.

    x: float (n, d), any norm; reference: float (m, d); groups: (m,) labels, compared as strings.
    A group's centroid is the mean of its unit-normalised reference rows, normalised again, so a
    row's nearest centroid is the one of highest cosine similarity (its own norm does not change
    the argmax). Returns (int64 (n,) indices into the names, the sorted group names); ties go to
    the first name. Memory: ``nearest_centroid``'s row blocks.
    """
    names, group_of = np.unique(np.asarray([str(g) for g in groups], dtype=object), return_inverse=True)
    ref = np.asarray(reference, dtype=np.float32)
    ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), np.float32(1e-12))
    centroids = np.zeros((len(names), ref.shape[1]), dtype=np.float64)
    np.add.at(centroids, group_of, ref)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    # with unit centroids, argmin ||x - c||^2 = argmax x.c: nearest_centroid's blocked argmin serves
    labels, _ = nearest_centroid(x, centroids)
    return labels, [str(n) for n in names]


def _lloyd(x: np.ndarray, k: int, rng: np.random.Generator, n_iter: int) -> np.ndarray:
    """Lloyd iterations from a k-means++ start; returns float32 centroids (k, d)."""
    n = x.shape[0]
    n_seed = min(n, max(_SEEDING_ROWS, 8 * k))
    seeding = x if n_seed == n else x[np.sort(rng.choice(n, size=n_seed, replace=False))]
    centroids = seeding[_kmeans_plus_plus(seeding, k, rng)].astype(np.float64)
    labels = np.full(n, -1, dtype=np.int64)
    for _ in range(n_iter):
        new_labels, dist = nearest_centroid(x, centroids)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        centroids = _update_centroids(x, labels, dist, k, centroids)
    return centroids.astype(np.float32)


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ (Arthur & Vassilvitskii 2007; sklearn's variant): row indices of k seeds.

    Each step draws ``2 + log(k)`` candidates with probability proportional to the squared distance
    to the nearest seed so far and keeps the one that lowers the total the most.
    """
    from threadpoolctl import threadpool_limits

    # Each step is a skinny product (n x d times d x n_trials); one BLAS thread does it
    # several times faster than two (measured: 3.2 s vs 7.9 s for k=1000 on 10k x 384).
    with threadpool_limits(limits=1, user_api="blas"):
        return _kmeans_plus_plus_steps(x, k, rng)


def _kmeans_plus_plus_steps(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = x.shape[0]
    x_sq = np.einsum("ij,ij->i", x, x)
    seeds = np.empty(k, dtype=np.int64)
    seeds[0] = rng.integers(n)
    closest = np.maximum(x_sq - 2.0 * (x @ x[seeds[0]]) + x_sq[seeds[0]], 0.0).astype(np.float64)
    n_trials = 2 + int(np.log(k))
    for j in range(1, k):
        cum = np.cumsum(closest)
        if cum[-1] <= 0.0:  # every row already sits on a seed: fill with unused rows, in order
            unused = np.setdiff1d(np.arange(n), seeds[:j], assume_unique=True)
            seeds[j:] = unused[:k - j]
            break
        cand = np.minimum(np.searchsorted(cum, rng.random(n_trials) * cum[-1], side="right"), n - 1)
        d = x @ x[cand].T  # (n, n_trials): one pass over x, the cost of each step
        d *= -2.0
        d += x_sq[:, None]
        d += x_sq[cand]
        np.maximum(d, 0.0, out=d)
        d = np.minimum(d, closest[:, None])
        best = int(np.argmin(d.sum(axis=0)))
        seeds[j] = cand[best]
        closest = np.ascontiguousarray(d[:, best], dtype=np.float64)
    return seeds


def _update_centroids(x: np.ndarray, labels: np.ndarray, dist: np.ndarray, k: int,
                      old: np.ndarray) -> np.ndarray:
    """Means of the assigned rows; an empty cluster moves to a far, not yet used row."""
    from scipy.sparse import csr_matrix

    n = x.shape[0]
    # One-hot (k, n) times x: each centroid's sum accumulates its rows in row order, in one
    # thread, so the result is the same on every run (float32 sums, as scikit-learn's).
    onehot = csr_matrix((np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(k, n))
    sums = np.asarray(onehot @ x, dtype=np.float64)
    counts = np.bincount(labels, minlength=k)
    present = counts > 0
    centroids = old.copy()
    centroids[present] = sums[present] / counts[present, None]
    empty = np.flatnonzero(~present)
    if len(empty):
        # Farthest rows first (ties by row order), one per empty cluster. Deterministic, and it
        # splits the worst-fitting cluster the way sklearn's relocation does.
        far = np.argsort(-dist, kind="stable")[:len(empty)]
        centroids[empty[:len(far)]] = x[far]
    return centroids


def _sklearn_centroids(x: np.ndarray, k: int, rng: np.random.Generator, n_iter: int) -> np.ndarray:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        km = KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=n_iter, tol=0.0,
                    algorithm="lloyd", random_state=int(rng.integers(2**31 - 1))).fit(x)
    return km.cluster_centers_.astype(np.float32)


def _faiss_centroids(x: np.ndarray, k: int, rng: np.random.Generator, n_iter: int) -> np.ndarray:
    try:
        import faiss
    except ImportError as e:
        raise ImportError("kmeans backend 'faiss' needs faiss: pip install 'proxysel[faiss]' "
                          "(or use backend='numpy')") from e
    # The sample is already drawn; faiss must not subsample again.
    km = faiss.Kmeans(x.shape[1], k, niter=n_iter, seed=int(rng.integers(2**31 - 1)),
                      max_points_per_centroid=x.shape[0], verbose=False)
    km.train(x)
    return np.asarray(km.centroids, dtype=np.float32)


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters 0, 1, ... in order of their first row."""
    _, first = np.unique(labels, return_index=True)
    old_in_order = labels[np.sort(first)]
    mapping = np.empty(int(labels.max()) + 1, dtype=np.int64)
    mapping[old_in_order] = np.arange(len(old_in_order))
    return mapping[labels]
