"""Kernel density of every example in embedding space, from a p-stable L2 LSH sketch.

This is the DENSITY signal of Sachdeva et al. 2024 ("How to Train Data-Efficient LLMs"):

    h_j(x) = floor((w_j . x + b_j) / r) mod B      w_j ~ N(0, I_d),  b_j ~ U(0, r),  j = 1..R
    score(y) = (1/R) sum_j count_j[h_j(y)] / N

where ``count_j`` counts the N sketched embeddings in each of the B buckets of hash j. The
expected score is the kernel sum ``(1/N) sum_x k(||x - y||)`` with the p-stable collision
probability as kernel (Datar et al. 2004): 1 at distance 0, about ``0.4 r / c`` at distance
c >> r. A point counts itself, so every score is at least 1/N.

The ``density`` selector samples with probability proportional to 1/score (inverse propensity),
which favours examples from sparse regions of the embedding space.

Defaults, measured (benchmarks/RESULTS.md, "Density sketch: R trade-off"): ``r`` is in
embedding units and suits unit-norm embeddings such as all-MiniLM-L6-v2's; a hash of those spans
a few dozen buckets, so ``B`` = 16384 never folds two occupied buckets together. ``R`` trades
time for variance: on 8,000 MiniLM embeddings of ShareGPT the median relative error against the
exact kernel sum is 2.3% / 1.7% / 1.2% at R = 128 / 256 / 512, at about 8 / 16 / 30 s for
1M x 384 on 2 cores. This kernel has heavy tails (about 0.4 r / c), so on real embeddings the
density is nearly flat (1st to 99th percentile within 9%) except around near-duplicates, which
it singles out clearly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_BUCKETS", "DEFAULT_HASHES", "DEFAULT_WIDTH", "DensitySketch", "lsh_density"]

DEFAULT_HASHES = 256  # R
DEFAULT_BUCKETS = 1 << 14  # B
DEFAULT_WIDTH = 0.25  # r, for unit-norm embeddings

# Rows per block: the (rows, R) float32 projections and int32 codes stay at tens of MiB.
_CHUNK_ROWS = 1 << 15


class DensitySketch:
    """An R x B table of bucket counts; ``add`` embeddings, then ``score`` any embeddings.

    d: embedding dimension. R, B, r: see the module docstring. seed: int or Generator; it draws the
    hash functions, so sketches with the same (d, R, B, r, seed) hash identically and can be merged.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((100, 8)).astype(np.float32)
    >>> sketch = DensitySketch(8, r=1.0, seed=0).add(x)
    >>> scores = sketch.score(x)
    >>> bool((scores >= 1 / 100).all())
    True
    """

    def __init__(self, d: int, R: int = DEFAULT_HASHES, B: int = DEFAULT_BUCKETS,
                 r: float = DEFAULT_WIDTH, seed: int | np.random.Generator = 0) -> None:
        for name, value in (("d", d), ("R", R), ("B", B)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"density sketch: {name} must be an integer >= 1, got {value!r}")
        if not np.isfinite(r) or r <= 0:
            raise ValueError(f"density sketch: r (bucket width) must be a number > 0, got {r!r}")
        self.d, self.R, self.B, self.r = int(d), int(R), int(B), float(r)
        rng = np.random.default_rng(seed)
        self.w = rng.standard_normal((self.d, self.R)).astype(np.float32)
        self.b = rng.uniform(0.0, self.r, size=self.R)
        self.counts = np.zeros((self.R, self.B), dtype=np.int64)
        self.n = 0
        # Offsets that put table j's buckets at [j*B, (j+1)*B) of one flat count vector.
        # int32 codes halve the memory traffic whenever the flat table index fits.
        self._code_dtype = np.int32 if self.R * self.B < 2**31 else np.int64
        self._offsets = (np.arange(self.R, dtype=np.int64) * self.B).astype(self._code_dtype)
        self._b32 = self.b.astype(np.float32)
        self._inv_r = np.float32(1.0 / self.r)

    def _codes(self, x: np.ndarray) -> np.ndarray:
        """int (m, R): ``j * B + h_j(x)`` for every row and hash function j (flat table index)."""
        proj = x @ self.w  # float32: bucket indices stay far below float32's exact-integer range
        proj += self._b32
        proj *= self._inv_r
        np.floor(proj, out=proj)
        h = proj.astype(self._code_dtype)
        if self.B & (self.B - 1) == 0:
            h &= self.B - 1  # two's complement: the same as a non-negative mod for a power of two
        else:
            h %= self.B  # numpy's mod is non-negative for a positive B, as the formula needs
        h += self._offsets
        return h

    def _blocks(self, x: np.ndarray):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"density sketch: embeddings must be (n, {self.d}), got shape {x.shape}")
        for start in range(0, x.shape[0], _CHUNK_ROWS):
            block = np.ascontiguousarray(x[start:start + _CHUNK_ROWS], dtype=np.float32)
            if not np.isfinite(block).all():
                raise ValueError("density sketch: embeddings hold NaN or inf values; drop those rows")
            yield start, block

    def add(self, x: np.ndarray) -> "DensitySketch":
        """Count the rows of ``x`` (float (n, d)) into the sketch. Returns self."""
        flat = self.counts.reshape(-1)
        for _, block in self._blocks(x):
            flat += np.bincount(self._codes(block).reshape(-1), minlength=flat.size)
            self.n += block.shape[0]
        return self

    def score(self, y: np.ndarray) -> np.ndarray:
        """Density of each row of ``y`` (float (m, d)): mean over the R tables of count / N.

        Returns float64 (m,), in [0, 1].
        """
        if self.n == 0:
            raise ValueError("density sketch: nothing added yet; call add() first")
        y = np.asarray(y)
        out = np.empty(y.shape[0], dtype=np.float64)
        # Counts of up to 2**24 are exact in float32, which halves the gather's memory traffic.
        flat = self.counts.reshape(-1).astype(np.float32 if self.n < 2**24 else np.float64)
        for start, block in self._blocks(y):
            out[start:start + block.shape[0]] = flat[self._codes(block)].sum(axis=1, dtype=np.float64)
        out /= self.R
        out /= self.n
        return out


def lsh_density(embeddings: np.ndarray, R: int = DEFAULT_HASHES, B: int = DEFAULT_BUCKETS,
                r: float = DEFAULT_WIDTH, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Sketch ``embeddings`` and score every row against it (the ``density`` column).

    embeddings: float32 (n, d); row i belongs to ids[i]. Must be finite.
    Returns float64 (n,): the kernel-density estimate, at least 1/n (each row counts itself).

    >>> x = np.vstack([np.eye(4, dtype=np.float32), np.tile([[1, 0, 0, 0]], (4, 1))])
    >>> s = lsh_density(x, r=0.25, seed=0)
    >>> bool(s[4:].min() > s[1:4].max())  # the four copies of e_1 are denser than e_2..e_4
    True
    """
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"lsh_density: embeddings must be 2-D (n, d), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("lsh_density: no embeddings")
    sketch = DensitySketch(x.shape[1], R=R, B=B, r=r, seed=seed).add(x)
    return sketch.score(x)
