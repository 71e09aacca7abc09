"""Group metrics and paired statistics for the bench: is a selection better than its baseline?

Group metrics. Every eval metric is a per-example array ``values`` (n,) with a group per example
(a record field such as ``family``, or a documented rule). A group's mean is the per-example mean,
or with ``weights`` (the response token counts of a token-weighted loss) ``sum(w v) / sum(w)``.
The **macro mean** is the unweighted mean of the group means, so every group counts the same
however many eval examples it has; the **pooled** mean ignores the groups. Rows whose value (or
weight) is NaN or inf, such as truncated eval examples, are left out and counted.

Paired statistics. A selector and its baseline (random, or full data) are trained on the same
seeds and measured on the same eval examples, so their per-example metrics come as aligned
arrays (n_seeds, n_eval). ``paired_comparison`` reports:

- per seed s: ``macro(selector[s]) - macro(baseline[s])`` (selector minus baseline), their mean,
  sample std (ddof=1; 0.0 with one seed, as ``report.aggregate``) and wins k of n;
- a paired bootstrap interval over **eval examples**: each of ``n_boot`` resamples draws the eval
  examples with replacement *within their group*, so every group keeps its size and the macro
  mean stays defined; the statistic is the macro mean over groups of the seed-averaged
  per-example difference (token-weighted by the resampled examples' own weights, when given);
  the interval is the (1 - level)/2 and (1 + level)/2 percentiles. The interval is over eval
  examples only: it says how much the ranking could move on another eval set of the same
  groups, not how much it moves with the training seed;
- a verdict from the interval: ``beats`` when it excludes 0 on the good side, ``trails`` when it
  excludes 0 on the bad side, ``ties`` when it contains 0;
- an interval **over training seeds** (``seed_interval``): Student's t on the per-seed deltas,
  ``mean ± t_{(1 + level)/2, n - 1} · std / sqrt(n)``, and its own verdict (``seed_verdict``). It
  covers what the bootstrap leaves out: on a small target, another seed (initialisation, data order,
  the selector's own draws) moves a subset's score by more than another eval set does. It needs
  two seeds, and with few it is wide (t = 4.30 at 3 seeds, 2.57 at 6): a result that beats the
  baseline over eval examples but ties over seeds is one the next seed may reverse. For such a tie
  ``seeds_needed`` says how many seeds the same mean and std would take to resolve.

Because the group means are linear in the values (the weights belong to the eval example, not the
model), the bootstrap statistic on the original sample equals the mean of the per-seed deltas.

>>> g = np.array(["a", "a", "b"])
>>> macro_mean(np.array([1.0, 3.0, 10.0]), g), pooled_mean(np.array([1.0, 3.0, 10.0]))
(6.0, 4.666666666666667)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = ["GroupMetric", "PairedComparison", "VERDICTS", "group_means", "group_metric", "macro_mean",
           "paired_comparison", "pooled_mean", "seed_interval", "seeds_needed", "stratified_resamples",
           "verdict"]

VERDICTS = ("beats", "ties", "trails")
# Resampled index matrices are built in blocks of at most this many entries (int64: 32 MiB).
_BLOCK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------------- group metrics


@dataclass(frozen=True)
class GroupMetric:
    """One metric per group and overall.

    means:   group -> mean over its usable rows (NaN when it has none, or their weights sum to 0).
    counts:  group -> usable rows.   skipped: group -> rows left out (NaN/inf value or weight).
    macro:   unweighted mean of ``means`` (NaN when some group's mean is NaN: leaving that group
             out would silently change what the macro mean averages).
    pooled:  mean over all usable rows, token-weighted when weights were given.
    """

    means: dict[str, float]
    counts: dict[str, int]
    skipped: dict[str, int]
    macro: float
    pooled: float

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


def _groups_of(groups: Sequence[Any] | np.ndarray | None, n: int) -> np.ndarray:
    """Groups as a str array (n,); None puts every row in the one group ``"all"``."""
    if groups is None:
        return np.full(n, "all", dtype=object)
    g = np.asarray([str(x) for x in groups], dtype=object)
    if g.shape != (n,):
        raise ValueError(f"groups must have one entry per example ({n}), got shape {g.shape}")
    return g


def _weights_of(weights: Sequence[float] | np.ndarray | None, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have one entry per example ({n}), got shape {w.shape}")
    if (w < 0).any():
        raise ValueError(f"weights must be >= 0 (token counts), got {w[w < 0][:3].tolist()}")
    return w


def _mean(v: np.ndarray, w: np.ndarray | None) -> float:
    if w is None:
        return float(v.mean()) if len(v) else float("nan")
    total = float(w.sum())
    return float(np.dot(v, w) / total) if total > 0 else float("nan")


def group_metric(values: Sequence[float] | np.ndarray, groups: Sequence[Any] | np.ndarray | None = None,
                 weights: Sequence[float] | np.ndarray | None = None) -> GroupMetric:
    """Per-group means, their macro mean and the pooled mean of a per-example metric.

    values:  float (n,): one metric value per eval example (a mean token loss, 0/1 exact match).
    groups:  (n,) group names (str() is applied); None: one group, so macro == pooled.
    weights: float (n,) >= 0, e.g. response token counts for a token-weighted loss; None: every
             example counts once.

    >>> m = group_metric([1.0, 3.0, np.nan, 10.0], ["a", "a", "b", "b"])
    >>> m.means, m.macro, m.skipped
    ({'a': 2.0, 'b': 10.0}, 6.0, {'a': 0, 'b': 1})
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D (n,), got shape {v.shape}")
    n = len(v)
    g = _groups_of(groups, n)
    w = _weights_of(weights, n)
    ok = np.isfinite(v) if w is None else np.isfinite(v) & np.isfinite(w)
    means, counts, skipped = {}, {}, {}
    for name in sorted(set(g.tolist())):
        rows = g == name
        use = rows & ok
        means[name] = _mean(v[use], None if w is None else w[use])
        counts[name] = int(use.sum())
        skipped[name] = int((rows & ~ok).sum())
    macro = float(np.mean(list(means.values()))) if means else float("nan")
    pooled = _mean(v[ok], None if w is None else w[ok])
    return GroupMetric(means=means, counts=counts, skipped=skipped, macro=macro, pooled=pooled)


def group_means(values: Sequence[float] | np.ndarray, groups: Sequence[Any] | np.ndarray,
                weights: Sequence[float] | np.ndarray | None = None) -> dict[str, float]:
    """group -> mean of ``values`` over the group's finite rows (token-weighted with ``weights``)."""
    return group_metric(values, groups, weights).means


def macro_mean(values: Sequence[float] | np.ndarray, groups: Sequence[Any] | np.ndarray,
               weights: Sequence[float] | np.ndarray | None = None) -> float:
    """The unweighted mean over groups of ``group_means``: every group counts the same."""
    return group_metric(values, groups, weights).macro


def pooled_mean(values: Sequence[float] | np.ndarray,
                weights: Sequence[float] | np.ndarray | None = None) -> float:
    """The mean over all finite rows, ignoring groups (token-weighted with ``weights``)."""
    return group_metric(values, None, weights).pooled


# ---------------------------------------------------------------------------- paired statistics


def verdict(lo: float, hi: float, higher_is_better: bool) -> str:
    """``beats``, ``ties`` or ``trails`` from an interval of selector - baseline.

    beats: the interval lies strictly on the good side of 0 (above for a metric where higher is
    better, such as exact match; below for a loss); trails: strictly on the bad side; ties: it
    contains 0 (an interval [0, 0] ties). A bound within 1e-9 of 0 (relative to the interval's
    size) is 0: the bootstrap's group means leave rounding residue such as 5.5e-16 where the
    exact difference is 0, and that must not turn a tie into a win.

    >>> verdict(0.01, 0.03, True), verdict(0.01, 0.03, False), verdict(-0.01, 0.02, True)
    ('beats', 'trails', 'ties')
    >>> verdict(5.5e-16, 4.8, True)
    'ties'
    """
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise ValueError(f"verdict needs a finite interval lo <= hi, got [{lo}, {hi}]")
    tol = 1e-9 * max(1.0, abs(lo), abs(hi))
    if lo > tol:
        return "beats" if higher_is_better else "trails"
    if hi < -tol:
        return "trails" if higher_is_better else "beats"
    return "ties"


def seed_interval(deltas: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """Student's t interval of the mean of per-seed deltas: ``mean ± t · std / sqrt(n)``.

    deltas: (n,) selector minus baseline, one per training seed (units of the metric). t is the
    (1 + level) / 2 quantile of Student's t with n - 1 degrees of freedom, std the sample std
    (ddof=1). Returns (lo, hi), or None with fewer than 2 seeds (no spread to estimate). The seeds
    are taken as independent draws of the whole pipeline (selection and target training).

    >>> lo, hi = seed_interval([1.0, 2.0, 3.0])            # mean 2, std 1, t(0.975, 2) = 4.303
    >>> round(lo, 3), round(hi, 3)
    (-0.484, 4.484)
    >>> seed_interval([0.5]) is None
    True
    """
    d = np.asarray(deltas, dtype=np.float64).reshape(-1)
    if len(d) < 2:
        return None
    if not np.isfinite(d).all():
        raise ValueError(f"seed_interval needs finite deltas, got {d.tolist()}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    from scipy.stats import t as student_t  # scipy comes with scikit-learn, a core dependency

    half = float(student_t.ppf((1.0 + level) / 2, len(d) - 1)) * float(d.std(ddof=1)) / math.sqrt(len(d))
    mean = float(d.mean())
    return mean - half, mean + half


def seeds_needed(mean: float, std: float, level: float = 0.95, limit: int = 1000) -> int | None:
    """The fewest seeds n >= 2 whose t interval, ``mean ± t_{(1 + level)/2, n - 1} · std / sqrt(n)``,
    would exclude 0 if further seeds kept this mean and std; None when even ``limit`` would not (a
    mean of 0). A planning figure for "add seeds", not a test: the next seeds move the mean too.

    >>> seeds_needed(1.0, 1.0)                     # t(0.975, 6) / sqrt(7) = 0.925 < 1 <= 1.049 at 6
    7
    >>> seeds_needed(0.5, 0.0), seeds_needed(0.0, 1.0)
    (2, None)
    """
    if not (math.isfinite(mean) and math.isfinite(std)) or std < 0:
        raise ValueError(f"seeds_needed needs a finite mean and std >= 0, got {mean!r}, {std!r}")
    if mean == 0:
        return None
    if std == 0:
        return 2
    from scipy.stats import t as student_t

    n = np.arange(2, limit + 1)
    half = student_t.ppf((1.0 + level) / 2, n - 1) * std / np.sqrt(n)
    ok = np.flatnonzero(half < abs(mean))
    return int(n[ok[0]]) if len(ok) else None


@dataclass(frozen=True)
class PairedComparison:
    """Selector minus baseline on a macro metric, over seeds and eval examples.

    deltas:   per seed, macro(selector) - macro(baseline), in the metric's units.
    mean, std: of ``deltas`` (std: ddof=1, 0.0 with one seed). wins: seeds where the delta is on
              the good side of 0 (strictly), of ``n_seeds``.
    lo, hi:   the paired bootstrap interval at ``level`` over eval examples (stratified by group).
    verdict:  "beats" | "ties" | "trails" (``verdict(lo, hi, higher_is_better)``).
    seed_lo, seed_hi, seed_verdict: the interval over training seeds (``seed_interval``) and its
              verdict; None with one seed. seeds_needed: ``seeds_needed(mean, std)`` when that
              verdict is a tie (how many seeds this mean and std would take to resolve), else None.
    n_eval:   eval examples used; n_skipped: left out because some seed's value was NaN/inf.
    groups:   group -> eval examples used.
    """

    deltas: list[float]
    mean: float
    std: float
    wins: int
    n_seeds: int
    lo: float
    hi: float
    level: float
    verdict: str
    higher_is_better: bool
    n_eval: int
    n_skipped: int
    n_boot: int
    seed: int
    groups: dict[str, int] = field(default_factory=dict)
    seed_lo: float | None = None
    seed_hi: float | None = None
    seed_verdict: str | None = None
    seeds_needed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (for the bench's results files)."""
        return asdict(self)


def _group_matrix(codes: np.ndarray, n_groups: int) -> np.ndarray:
    """float64 one-hot (n, n_groups): column j marks the rows of group j."""
    m = np.zeros((len(codes), n_groups))
    m[np.arange(len(codes)), codes] = 1.0
    return m


def _macro_rows(x: np.ndarray, onehot: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Macro mean of every row of ``x`` (m, n), whose column j belongs to the group onehot[j].

    w: (m, n) weights of the same entries, or None (per-example means). Returns float64 (m,).
    """
    if w is None:
        sums, sizes = x @ onehot, onehot.sum(axis=0)
        return (sums / sizes).mean(axis=1)
    return ((x * w) @ onehot / (w @ onehot)).mean(axis=1)


def stratified_resamples(groups: Sequence[Any] | np.ndarray, n_boot: int,
                         rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n examples that keep every group's size, in blocks.

    Yields int64 index arrays (b, n), b rows per block, ``n_boot`` rows in all: position j of a
    row holds an example drawn uniformly with replacement from the group of example j, so
    ``groups[row]`` equals ``groups`` for every row. The draws depend only on the groups,
    ``n_boot`` and the generator's state.
    """
    g = _groups_of(groups, len(groups))
    n = len(g)
    members = [np.flatnonzero(g == name) for name in sorted(set(g.tolist()))]
    block = max(1, _BLOCK_ELEMENTS // max(1, n))
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        idx = np.empty((b, n), dtype=np.int64)
        for pos in members:
            idx[:, pos] = pos[rng.integers(0, len(pos), size=(b, len(pos)))]
        yield idx


def paired_comparison(selector: Sequence[Sequence[float]] | np.ndarray,
                      baseline: Sequence[Sequence[float]] | np.ndarray,
                      groups: Sequence[Any] | np.ndarray | None = None, *, higher_is_better: bool,
                      weights: Sequence[float] | np.ndarray | None = None, n_boot: int = 2000,
                      level: float = 0.95, seed: int = 0) -> PairedComparison:
    """Paired statistics of a selector against a baseline on the macro mean of a per-example metric.

    selector, baseline: float (n_seeds, n_eval): the per-example metric (mean token loss, 0/1
              exact match) of the target trained on the selector's subset / the baseline's, row s
              from seed s (the same seed in both), column i from eval example i (the same in both).
              A 1-D array is one seed.
    groups:   (n_eval,) the eval examples' groups; None: one group (the pooled metric).
    higher_is_better: True for exact match or win rate, False for a loss.
    weights:  float (n_eval,) >= 0: the eval examples' response token counts for a token-weighted
              loss (they depend on the example, not on the model); None: per-example means.
    n_boot:   bootstrap resamples; level: the interval's coverage; seed: the resampling seed.

    Eval examples whose value is NaN/inf in any seed of either array (or whose weight is) are left
    out of everything, so both sides are always measured on the same examples; ``n_skipped`` counts
    them. A group left with no example is an error (its macro share would be undefined).
    """
    sel = np.atleast_2d(np.asarray(selector, dtype=np.float64))
    base = np.atleast_2d(np.asarray(baseline, dtype=np.float64))
    if sel.shape != base.shape or sel.ndim != 2:
        raise ValueError(f"selector and baseline must both be (n_seeds, n_eval), aligned by seed and eval "
                         f"example; got {sel.shape} and {base.shape}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    n_seeds, n_eval = sel.shape
    g = _groups_of(groups, n_eval)
    w = _weights_of(weights, n_eval)
    ok = np.isfinite(sel).all(axis=0) & np.isfinite(base).all(axis=0)
    if w is not None:
        ok &= np.isfinite(w)
    names = sorted(set(g.tolist()))
    empty = [name for name in names if not (ok & (g == name)).any()]
    if empty:
        raise ValueError(f"groups {empty[:5]} have no eval example with a finite value in every seed")
    diff = (sel - base)[:, ok]
    g, w = g[ok], None if w is None else w[ok]
    if w is not None and any(w[g == name].sum() <= 0 for name in names):
        raise ValueError("every group needs a positive total weight (token count)")
    index = {name: j for j, name in enumerate(names)}
    codes = np.array([index[x] for x in g.tolist()], dtype=np.int64)
    onehot = _group_matrix(codes, len(names))

    deltas = _macro_rows(diff, onehot, None if w is None else np.broadcast_to(w, diff.shape))
    good = deltas > 0 if higher_is_better else deltas < 0
    mean_diff = diff.mean(axis=0)  # the seed-averaged per-example difference

    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    done = 0
    for idx in stratified_resamples(g, n_boot, rng):
        stats[done:done + len(idx)] = _macro_rows(mean_diff[idx], onehot, None if w is None else w[idx])
        done += len(idx)
    alpha = (1.0 - level) / 2
    lo, hi = (float(v) for v in np.quantile(stats, [alpha, 1.0 - alpha]))
    mean, std = float(deltas.mean()), (float(deltas.std(ddof=1)) if n_seeds > 1 else 0.0)
    over_seeds = seed_interval(deltas, level)
    seed_verdict = None if over_seeds is None else verdict(*over_seeds, higher_is_better)
    return PairedComparison(
        deltas=[float(d) for d in deltas], mean=mean, std=std, wins=int(good.sum()), n_seeds=n_seeds,
        lo=lo, hi=hi, level=level, verdict=verdict(lo, hi, higher_is_better),
        higher_is_better=higher_is_better,
        n_eval=int(ok.sum()), n_skipped=int((~ok).sum()), n_boot=int(n_boot), seed=seed,
        groups={name: int((g == name).sum()) for name in names},
        seed_lo=None if over_seeds is None else over_seeds[0],
        seed_hi=None if over_seeds is None else over_seeds[1],
        seed_verdict=seed_verdict,
        seeds_needed=seeds_needed(mean, std, level) if seed_verdict == "ties" else None)
