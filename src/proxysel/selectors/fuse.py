"""``fuse``: rank fusion, a weighted mean of per-signal rank percentiles, each with its direction.

For every signal s with direction and weight w_s, over the m candidates:

    r_s(x)  = the rank of x's value, ascending, 1..m (ties share their average rank)
    low:      p_s(x) = (r_s(x) - 1) / (m - 1)                  smallest value -> 0
    high:     p_s(x) = (m - r_s(x)) / (m - 1)                  largest value  -> 0
    middle:   p_s(x) = |r_s(x) - (m + 1) / 2| / ((m - 1) / 2)  median value   -> 0
    fuse(x) = sum_s w_s p_s(x) / sum_s w_s                      in [0, 1], 0 = best

The lowest ``fuse`` is kept first (ties keep pool order). Ranks, not values, so signals of any
scale and skew mix; ``middle`` is the central band of ``top --order middle``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from proxysel.options import FieldError, option
from proxysel.selectors.base import RankingParams, RankingSelector
from proxysel.selectors.registry import register_selector
from proxysel.selectors.top import ORDERS

__all__ = ["FuseSelector", "parse_weights", "rank_percentile"]


def average_rank(values: np.ndarray) -> np.ndarray:
    """float64 (m,): 1-based ascending ranks, ties sharing their mean rank.

    >>> average_rank(np.array([3.0, 1.0, 3.0, 2.0])).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # 0-based position of each distinct value's first copy
    return (first + (counts + 1) / 2.0)[inverse.reshape(-1)]


def rank_percentile(values: np.ndarray, direction: str) -> np.ndarray:
    """float64 (m,) in [0, 1], 0 = most preferred in ``direction`` (low, high or middle).

    >>> rank_percentile(np.array([5.0, 1.0, 4.0, 2.0, 3.0]), "middle").tolist()
    [1.0, 1.0, 0.5, 0.5, 0.0]
    """
    m = len(values)
    if m < 2:
        return np.zeros(m)
    r = average_rank(values)
    if direction == "low":
        return (r - 1) / (m - 1)
    if direction == "high":
        return (m - r) / (m - 1)
    return np.abs(r - (m + 1) / 2.0) / ((m - 1) / 2.0)


def parse_weights(weights: Any) -> list[tuple[str, str, float]]:
    """(signal, direction, weight) for every entry of ``weights``: ``{signal: direction}`` or
    ``{signal: {direction: ..., weight: ...}}`` (weight default 1)."""
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError("fuse needs weights: a mapping signal -> direction (low, high or middle), "
                         "e.g. {lp_app: low, ppl: middle}, or signal -> {direction: ..., weight: ...}; "
                         f"got {weights!r}")
    terms = []
    for signal, spec in weights.items():
        if not isinstance(signal, str) or not signal:
            raise ValueError(f"fuse weights: a signal must be a column name, got {signal!r}")
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"direction", "weight"}
            if unknown or "direction" not in spec:
                raise ValueError(f"fuse weights: '{signal}' takes direction (required) and weight, "
                                 f"got {dict(spec)!r}")
            direction, weight = spec["direction"], spec.get("weight", 1)
        else:
            direction, weight = spec, 1
        if direction not in ORDERS:
            raise ValueError(f"fuse weights: the direction of '{signal}' must be one of {ORDERS}, got "
                             f"{direction!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)) \
                or not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"fuse weights: the weight of '{signal}' must be a number > 0, got {weight!r}")
        terms.append((signal, direction, float(weight)))
    return terms


@dataclass(frozen=True)
class FuseParams(RankingParams):
    weights: dict[str, Any] | None = option(None, "signal -> direction (low, high, middle), or signal -> "
                                                  "{direction: ..., weight: w}, e.g. {lp_app: low, "
                                                  "ppl: middle}")

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            parse_weights(self.weights)
        except ValueError as e:
            raise FieldError("weights", str(e)) from None


@register_selector("fuse")
class FuseSelector(RankingSelector):
    """Keep the candidates with the best weighted mean rank percentile over several signals.

    weights: signal -> direction, or signal -> {direction: low|high|middle, weight: w > 0}.
             Percentiles are over all candidates; a row with NaN/inf in any of the signals is not a
             candidate (its reason names the signal).
    Plus the shared options of ``RankingSelector``: with ``within_clusters`` the fused score is
    ranked inside every cluster, the budget split in proportion to cluster size.

    >>> from proxysel.selectors.base import ScoreTable
    >>> t = ScoreTable(ids=list("abc"), columns={"lp_app": np.array([0.3, 0.1, 0.2]),
    ...                                          "ppl": np.array([5.0, 9.0, 7.0])})
    >>> FuseSelector(weights={"lp_app": "low", "ppl": "middle"}).select(t, 1).selected_ids
    ['c']
    """

    name_signals = True

    Params = FuseParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._terms = parse_weights(self.weights)

    def required_columns(self) -> tuple[str, ...]:
        return tuple(s for s, _, _ in self._terms) + super().required_columns()

    @property
    def label(self) -> str:
        return "fuse"

    def _values(self, table: Any, rows: np.ndarray, notes: list[str]) -> np.ndarray:
        total = np.zeros(len(rows))
        for signal, direction, weight in self._terms:
            column = table.column(signal)
            if column.ndim != 1:
                raise ValueError(f"fuse: signal column '{signal}' must be 1-D, got shape {column.shape}")
            total += weight * rank_percentile(column[rows].astype(np.float64), direction)
        notes.append("fuse: " + ", ".join(f"{s} {d} (weight {w:g})" for s, d, w in self._terms)
                     + f"; rank percentiles over the {len(rows)} candidates")
        return total / sum(w for _, _, w in self._terms)

    def _order(self, values: np.ndarray | None, m: int, rng: np.random.Generator) -> np.ndarray:
        return np.argsort(values, kind="stable")
