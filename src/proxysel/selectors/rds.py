"""``rds``: RDS+ selection (Ivison et al. 2025): the pool examples most similar to the reference set,
taken round-robin over the reference groups (tasks).

The official code (hamishivi/automated-instruction-selection) scores every (reference, pool)
pair by the cosine similarity of their RDS+ embeddings (``proxysel.signals.rds``), then:

- *within a group* (one task's reference examples), a pool example's score is its **max**
  similarity over the group's examples (``minimal_multitask/get_top_aggregated_influences.py``,
  ``--selection_method max``: ``max(v)`` over the test points of one file);
- *across groups*, **round-robin** (``--aggregation_method round_robin``, the default): every
  group's pool examples are sorted by that score, best first, and the groups take turns popping
  their next one; an example popped a second time (already taken by another group) adds nothing
  and uses the turn. It stops when the budget is reached. Groups take their turns in the order
  of the input files; here in sorted order of the group names.

With one group this is the top k by max similarity, which is also what the README's large-scale
script does for one task (``minimal_multitask/get_top_optimized.py``: a heap over all pairs that
pops the best pair whose pool example is new). ``by="example"`` makes every reference example its
own group: the round-robin over reference examples of ``minimal_multitask/get_top_influences.py
--selection_method max``.

Exactly: write rank_g(x) for x's 0-based position in group g's order (ties in pool order, as
Python's stable ``sorted(..., reverse=True)`` over pool indices gives) and G for the number of
groups. Group g's turn in round r is visit ``t = r * G + g``, and x is taken at its first visit,
``T(x) = min_g rank_g(x) * G + g``. Every visit pops a different pool example, so the T are
distinct and the round-robin keeps the k examples with the smallest T. That is what is computed:
one pass over the pool in row blocks per chunk of groups, keeping only the per-group maximum
(float32 (n, groups in the chunk)), so a 1M x 1,000 similarity matrix never exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from proxysel.options import check_fields, option
from proxysel.selectors.base import ScoreTable, Selection, Selector, format_value, split_rngs
from proxysel.selectors.registry import register_selector

__all__ = ["RdsSelector", "RoundRobin", "group_similarity", "round_robin"]

BYS = ("group", "example")
#: At most this many bytes for the per-group maxima of one pass (float32 (n, groups per pass)).
CHUNK_BYTES = 256 << 20


def unit_rows(x: np.ndarray) -> np.ndarray:
    """float32 rows divided by their L2 norm (a zero row stays zero: similarity 0 to everything)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


def group_similarity(pool: np.ndarray, reference: np.ndarray, starts: np.ndarray, *,
                     rows: np.ndarray | None = None, block_rows: int = 16384) -> np.ndarray:
    """float32 (len(rows), G): for every pool row, its max cosine similarity to each group.

    pool:      (n, d) embeddings (any norm; each block is normalised on the fly).
    reference: (m, d) unit-norm reference embeddings, sorted by group so that group g is the
               rows ``starts[g]:starts[g + 1]`` (``starts`` int (G,), starting at 0).
    rows:      the pool rows to score (default all), in the order of the output.
    block_rows: pool rows per matrix product; the largest temporary is float32 (block_rows, m).
    """
    rows = np.arange(pool.shape[0]) if rows is None else rows
    out = np.empty((len(rows), len(starts)), dtype=np.float32)
    for s in range(0, len(rows), block_rows):
        block = unit_rows(pool[rows[s:s + block_rows]])
        out[s:s + block_rows] = np.maximum.reduceat(block @ reference.T, starts, axis=1)
    return out


@dataclass
class RoundRobin:
    """Where the round-robin takes every scored row (arrays of the length of the rows scored).

    visit: int64, T(x), the visit at which the row is taken (smaller = earlier; all distinct).
    group: int64, the group whose turn took it.   sim: float32, its similarity for that group.
    n_groups: G, the number of groups taking turns.
    """

    visit: np.ndarray
    group: np.ndarray
    sim: np.ndarray
    n_groups: int

    @property
    def round(self) -> np.ndarray:
        """1-based round in which the row is taken."""
        return self.visit // self.n_groups + 1


def round_robin(pool: np.ndarray, reference: np.ndarray, groups: np.ndarray, *,
                rows: np.ndarray | None = None, block_rows: int = 16384,
                chunk_bytes: int = CHUNK_BYTES) -> tuple[RoundRobin, list[str]]:
    """The RDS+ round-robin over the groups of ``reference`` for the pool ``rows``.

    pool: (n, d); reference: (m, d); groups: (m,) labels (compared as strings). Returns the
    visit of every row and the sorted group names (the turn order). Memory: float32 (len(rows),
    groups per pass) plus a few int64 (len(rows),) arrays; groups are processed ``chunk_bytes``
    at a time, so many groups (``by="example"``) cost passes, not memory.
    """
    rows = np.arange(pool.shape[0]) if rows is None else np.asarray(rows)
    labels = np.asarray([str(g) for g in groups], dtype=object)
    names, group_of = np.unique(labels, return_inverse=True)
    by_group = np.argsort(group_of, kind="stable")
    ref = unit_rows(np.asarray(reference)[by_group])
    bounds = np.concatenate(([0], np.cumsum(np.bincount(group_of, minlength=len(names)))))
    n, n_groups = len(rows), len(names)
    per_pass = max(1, chunk_bytes // max(1, 4 * n))
    visit = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    best_group = np.zeros(n, dtype=np.int64)
    best_sim = np.zeros(n, dtype=np.float32)
    rank = np.empty(n, dtype=np.int64)
    for g0 in range(0, n_groups, per_pass):
        g1 = min(n_groups, g0 + per_pass)
        sims = group_similarity(pool, ref[bounds[g0]:bounds[g1]], bounds[g0:g1] - bounds[g0],
                                rows=rows, block_rows=block_rows)
        for j in range(g1 - g0):
            rank[np.argsort(-sims[:, j], kind="stable")] = np.arange(n)
            t = rank * n_groups + (g0 + j)
            better = t < visit
            visit[better] = t[better]
            best_group[better] = g0 + j
            best_sim[better] = sims[better, j]
    return RoundRobin(visit, best_group, best_sim, n_groups), [str(x) for x in names]


@dataclass(frozen=True)
class RdsParams:
    by: str = option("group", "rds: group: max similarity within a reference group, round-robin across "
                              "groups (the official multi-task RDS+); example: round-robin over every "
                              "reference example", choices=BYS)
    block_rows: int = option(16384, "rds: pool rows per similarity block (memory, not the result)", minimum=1)
    include_truncated: bool = option(False, "let fully truncated examples compete (their signal must still "
                                            "be finite; default: left out)")

    def __post_init__(self) -> None:
        check_fields(self)


@register_selector("rds")
class RdsSelector(Selector):
    """RDS+: the pool rows nearest the reference set, round-robin over its groups.

    Reads the pool's ``rds`` (n, d) and ``table.reference``: its ``rds``
    (m, d) and ``group`` (m,) (one group when the reference table has no ``group`` column).

    by:         "group" (default): max similarity within a group, round-robin across groups;
                "example": every reference example is its own group (round-robin over them).
    block_rows: pool rows per matrix product (memory, not the result).
    include_truncated: let rows whose response was truncated away compete (their embedding
                covers every token, so it exists).

    rank: the order in which the round-robin takes the row (1 = first). reason:
    ``group 'math': sim=0.83, round 4, kept`` (``reference 'id'`` with ``by="example"``).
    """

    Params = RdsParams
    needs_reference = True

    def required_columns(self) -> tuple[str, ...]:
        return ("rds",)

    def _reference(self, table: ScoreTable, d: int, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(reference embeddings (m', d), group labels (m',)) of the usable reference rows."""
        ref = table.reference
        if ref is None:
            raise ValueError("rds needs a reference set (the examples the model should be good at): "
                             "the score table has none; score one with --reference FILE")
        emb = ref.column("rds")
        if emb.ndim != 2 or emb.shape[1] != d:
            raise ValueError(f"rds: the reference's rds has shape {emb.shape}, the pool's has "
                             f"{d} dimensions; embed both with the same model")
        if self.by == "example":
            labels = np.asarray(ref.ids, dtype=object)
        elif "group" in ref.columns:
            labels = np.asarray(ref.column("group"), dtype=object)
        else:
            labels = np.full(ref.n, "reference", dtype=object)
        ok = np.isfinite(emb).all(axis=1)
        if not ok.any():
            raise ValueError(f"rds: none of the {ref.n} reference rows has a finite rds")
        if not ok.all():
            notes.append(f"{int((~ok).sum())} of {ref.n} reference rows left out (rds not finite)")
        return emb[ok], labels[ok]

    def select(self, table: ScoreTable, budget: float | int, *, seed: Any = 0) -> Selection:
        split_rngs(seed)  # nothing here is random; the seed is still checked like everywhere
        pool = table.column("rds")
        if pool.ndim != 2:
            raise ValueError(f"rds: column 'rds' must be 2-D (n, dim), got shape {pool.shape}")
        candidates, reason = self._candidates(table, self.required_columns())
        rows = np.flatnonzero(candidates)
        notes: list[str] = []
        k = self._budget(budget, table, len(rows))
        reference, labels = self._reference(table, pool.shape[1], notes)
        rr, names = round_robin(pool, reference, labels, rows=rows, block_rows=self.block_rows)

        n = table.n
        order = np.argsort(rr.visit, kind="stable")
        rank = np.full(n, -1, dtype=np.int64)
        rank[rows[order]] = np.arange(1, len(rows) + 1)
        selected = np.zeros(n, dtype=bool)
        selected[rows[order[:k]]] = True
        kind = "reference" if self.by == "example" else "group"
        rounds, groups, sims = rr.round.tolist(), rr.group.tolist(), rr.sim.tolist()
        for j, i in enumerate(rows.tolist()):
            reason[i] = (f"{kind} '{names[groups[j]]}': sim={format_value(sims[j])}, round {rounds[j]}, "
                         f"{'kept' if selected[i] else 'dropped'}")
        if self.by == "group":
            kept = np.bincount(rr.group[order[:k]], minlength=len(names))
            notes.append("kept per group: " + ", ".join(f"{g} {c}" for g, c in zip(names, kept.tolist())))
        return self._selection(table, selected, rank, np.full(n, -1, dtype=np.int64), reason, k, notes)
