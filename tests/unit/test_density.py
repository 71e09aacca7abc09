"""The LSH density sketch (proxysel.signals.density) and inverse-propensity sampling on it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from proxysel.selectors import ScoreTable, get_selector
from proxysel.signals.density import DensitySketch, lsh_density


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_plus_copies(seed: int = 0) -> np.ndarray:
    """1,000 random unit vectors, then 1,000 copies of one more (d = 384)."""
    rng = np.random.default_rng(seed)
    x = unit(rng.standard_normal((1001, 384)))
    return np.vstack([x[:1000], np.repeat(x[1000:], 1000, axis=0)])


def pstable_collision(c: np.ndarray, r: float) -> np.ndarray:
    """P[h(x) = h(y)] for ||x - y|| = c (Datar et al. 2004, Gaussian projections)."""
    out = np.ones_like(c, dtype=np.float64)
    pos = c > 0
    u = r / c[pos]
    phi = np.array([0.5 * math.erfc(v / math.sqrt(2)) for v in u])  # Phi(-u)
    out[pos] = 1 - 2 * phi - 2 / (math.sqrt(2 * math.pi) * u) * (1 - np.exp(-u * u / 2))
    return out


def test_copies_are_far_denser():
    x = random_plus_copies()
    s = lsh_density(x, seed=0)
    assert s.shape == (2000,) and s.dtype == np.float64
    assert s[1000:].min() > 5 * s[:1000].max()
    assert np.ptp(s[1000:]) == 0  # identical vectors hash identically
    assert s.min() >= 1 / 2000


def test_inverse_propensity_picks_copies_far_less_often():
    x = random_plus_copies()
    t = ScoreTable(ids=[f"x{i}" for i in range(2000)], columns={"density": lsh_density(x, seed=0)})
    copies = [get_selector("density")().select(t, 200, seed=s).selected[1000:].sum() for s in range(20)]
    # Uniform sampling would take about 100 copies out of 200; 1/density takes about 12.
    assert np.mean(copies) < 25
    uniform = [get_selector("random")().select(t, 200, seed=s).selected[1000:].sum() for s in range(20)]
    assert np.mean(uniform) > 80


def test_sketch_matches_the_exact_kernel_sum():
    """Parity: with many tables the sketch converges to (1/N) sum_x P[collision(x, y)]."""
    rng = np.random.default_rng(1)
    centres = unit(rng.standard_normal((4, 16)))
    x = unit(np.repeat(centres, [10, 20, 40, 80], axis=0) + 0.15 * rng.standard_normal((150, 16)))
    r = 0.5
    est = lsh_density(x, R=8192, B=1024, r=r, seed=0)
    dist = np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0))
    exact = pstable_collision(dist.ravel(), r).reshape(dist.shape).mean(axis=1)
    np.testing.assert_allclose(est, exact, rtol=0.05)
    assert np.corrcoef(est, exact)[0, 1] > 0.99


def test_same_seed_same_scores_and_chunking_does_not_matter(monkeypatch):
    x = random_plus_copies()[::4]
    a = lsh_density(x, R=32, seed=3)
    import proxysel.signals.density as density

    monkeypatch.setattr(density, "_CHUNK_ROWS", 7)
    b = lsh_density(x, R=32, seed=3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, lsh_density(x, R=32, seed=4))


def test_streaming_add_equals_one_shot():
    x = random_plus_copies()[::5]
    one = DensitySketch(384, R=16, seed=0).add(x)
    two = DensitySketch(384, R=16, seed=0).add(x[:150]).add(x[150:])
    assert np.array_equal(one.counts, two.counts) and one.n == two.n == len(x)
    assert np.array_equal(one.score(x[:10]), two.score(x[:10]))


def test_counts_per_table_sum_to_n():
    x = random_plus_copies()[::10]
    sk = DensitySketch(384, R=8, B=7, r=0.1, seed=0).add(x)  # a small, non power-of-two B
    assert (sk.counts.sum(axis=1) == len(x)).all()
    assert sk.counts.shape == (8, 7)


def test_hash_formula():
    """h(x) = floor((w.x + b) / r) mod B, computed by hand for a few rows."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    sk = DensitySketch(3, R=4, B=5, r=0.3, seed=2)
    expected = np.mod(np.floor((x.astype(np.float64) @ sk.w.astype(np.float64) + sk.b) / 0.3), 5)
    got = sk._codes(x) - np.arange(4) * 5
    assert np.array_equal(got, expected.astype(np.int64))


@pytest.mark.parametrize("kwargs, match", [
    (dict(R=0), "R must be an integer >= 1"),
    (dict(B=0), "B must be an integer >= 1"),
    (dict(r=0.0), "r \\(bucket width\\) must be a number > 0"),
    (dict(r=float("nan")), "r \\(bucket width\\) must be a number > 0"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DensitySketch(4, **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="must be 2-D"):
        lsh_density(np.ones(4, dtype=np.float32))
    with pytest.raises(ValueError, match=r"embeddings must be \(n, 4\)"):
        DensitySketch(4).add(np.ones((3, 5), dtype=np.float32))
    x = np.ones((3, 4), dtype=np.float32)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        lsh_density(x)
    with pytest.raises(ValueError, match="nothing added yet"):
        DensitySketch(4).score(np.ones((1, 4), dtype=np.float32))
