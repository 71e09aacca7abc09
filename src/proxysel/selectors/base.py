"""What every selector shares: the score table it reads, the selection it returns, budgets,
candidate filtering, cluster labels and the allocation of a budget across clusters.

A selector turns a ``ScoreTable`` (one row per example id, in pool order) and a budget into a
``Selection`` (one row per id: selected, rank, cluster, reason). Rows whose needed signal is NaN
or inf, and rows marked ``truncated``, are never candidates; their reason says why.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

import numpy as np
import pyarrow as pa

from proxysel.cluster import kmeans, nearest_group
from proxysel.options import FieldError, check_fields, iter_fields, option
from proxysel.store.run import list_matrix

__all__ = [
    "EXCLUDED_INF", "EXCLUDED_NAN", "EXCLUDED_TRUNCATED", "ClusterParams", "NoParams", "RankingParams",
    "RankingSelector", "ScoreTable", "Selection", "Selector", "allocate_largest_remainder",
    "allocate_by_power", "allocate_capped", "allocate_official", "parse_budget", "resolve_budget",
]

EXCLUDED_NAN = "excluded: signal is NaN"
EXCLUDED_INF = "excluded: signal is inf"
EXCLUDED_TRUNCATED = "excluded: truncated"


# --------------------------------------------------------------------------------------- budget

BUDGET_HELP = "a fraction in (0, 1] or a count >= 1"


def parse_budget(budget: Any) -> float | int:
    """The one budget parser: ``0.1`` (or "0.1") -> a fraction, ``5000`` (or "5000", 5000.0) -> a count,
    ``1.0`` -> the whole pool (a fraction). FieldError("budget") otherwise.

    >>> parse_budget("0.1"), parse_budget(5000.0), parse_budget(1.0)
    (0.1, 5000, 1.0)
    """
    value: Any = budget
    if isinstance(budget, str):
        text = budget.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                value = None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise FieldError("budget", f"must be {BUDGET_HELP}, got {budget!r}")
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if value.is_integer() and value > 1:
            value = int(value)
    else:
        value = int(value)
    if isinstance(value, float) and not (math.isfinite(value) and 0 < value <= 1):
        raise FieldError("budget", f"must be {BUDGET_HELP}, got {budget!r}")
    if isinstance(value, int) and value < 1:
        raise FieldError("budget", f"must be {BUDGET_HELP}, got {budget!r}")
    return value


def resolve_budget(budget: float | int, n: int) -> int:
    """Turn ``--budget`` into a number of examples for a pool of ``n``.

    budget: a fraction in (0, 1] -> ``round(budget * n)`` (halves round up), at least 1 (1.0 is
            the whole pool, as the official LP code allows 100%); or an integer count >= 1 (an
            integral float above 1 such as ``5000.0`` counts too). Parsed by ``parse_budget``.
    n:      size of the candidate pool.

    >>> (resolve_budget(0.1, 52002), resolve_budget(300, 1000), resolve_budget(0.001, 10),
    ...  resolve_budget(1.0, 7))
    (5200, 300, 1, 7)
    """
    if n < 1:
        raise ValueError(f"budget: the candidate pool is empty (n={n})")
    if isinstance(budget, str):  # text is parsed once, where it is read (parse_budget)
        raise FieldError("budget", f"must be {BUDGET_HELP}, got {budget!r}")
    value = parse_budget(budget)
    if isinstance(value, float):
        return max(1, math.floor(value * n + 0.5))
    if value > n:
        raise ValueError(f"budget {value} is larger than the candidate pool ({n} examples)")
    return value


def allocate_largest_remainder(sizes: np.ndarray, budget: int, *, over: bool = False) -> np.ndarray:
    """Split ``budget`` across groups in proportion to ``sizes``, summing to exactly ``budget``.

    Hamilton's method: every group gets ``floor(budget * size / total)``; the few left over go to
    the largest remainders (ties: the earlier group). Integer arithmetic, so no float ties.
    ``over=True`` allows a budget above the total (draws with replacement).

    >>> allocate_largest_remainder(np.array([1, 9, 23]), 3).tolist()
    [0, 1, 2]
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if budget < 0 or total == 0 or (budget > total and not over):
        raise ValueError(f"cannot allocate {budget} across groups holding {total} rows")
    scaled = sizes * budget
    quotas = scaled // total
    remainders = scaled % total
    short = budget - int(quotas.sum())
    if short:
        order = np.lexsort((np.arange(len(sizes)), -remainders))
        quotas[order[:short]] += 1
    return quotas


def allocate_by_power(sizes: np.ndarray, budget: int, power: float) -> np.ndarray:
    """Split ``budget`` across groups with quotas in proportion to ``size ** power``, each capped
    at its group's size, summing to exactly ``budget``.

    ``power`` 1 is ``allocate_largest_remainder`` (proportional); 0 gives every group an equal
    quota (a group smaller than its share is taken whole and the rest is re-split among the others,
    like UniMax, Chung et al. 2023); 0.5 is the square-root quotas of temperature sampling (XLM's
    alpha = 0.5 over languages, Lample and Conneau 2019), which lift small groups without
    flattening the large ones. See ``allocate_capped`` for the capping.

    >>> allocate_by_power(np.array([100, 25, 4]), 30, 0.5).tolist()
    [18, 9, 3]
    >>> allocate_by_power(np.array([100, 25, 4]), 30, 0.0).tolist()
    [13, 13, 4]
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"size power must be in [0, 1], got {power!r}")
    if power == 1.0:
        return allocate_largest_remainder(sizes, budget)
    weights = np.sqrt(sizes.astype(np.float64)) if power == 0.5 else sizes.astype(np.float64) ** power
    return allocate_capped(weights, sizes, budget)


def allocate_capped(weights: np.ndarray, caps: np.ndarray, budget: int) -> np.ndarray:
    """Split ``budget`` across groups in proportion to ``weights`` (float, >= 0), no group above its
    ``caps`` (int), summing to exactly ``budget``.

    Water-filling: the groups whose share reaches their cap keep their cap, and the budget left is
    re-split over the others until none overflows. Remainders go to the largest fractional parts
    (ties: the earlier group), as in Hamilton's method.

    >>> allocate_capped(np.array([1.0, 1.0, 1.0]), np.array([50, 6, 2]), 20).tolist()
    [12, 6, 2]
    """
    weights = np.asarray(weights, dtype=np.float64)
    caps = np.asarray(caps, dtype=np.int64)
    total = int(caps.sum())
    if budget < 0 or total == 0 or budget > total:
        raise ValueError(f"cannot allocate {budget} across groups holding {total} rows")
    if (weights < 0).any() or not np.isfinite(weights).all():
        raise ValueError("weights must be finite and >= 0")
    quotas = np.zeros(len(caps), dtype=np.int64)
    open_ = (caps > 0) & (weights > 0)
    left = budget
    while left:
        if not open_.any():  # only zero-weight groups have room: fill them in order
            open_ = quotas < caps
            weights = np.ones(len(caps))
        share = np.zeros(len(caps))
        share[open_] = left * weights[open_] / weights[open_].sum()
        full = open_ & (share >= caps - quotas)
        if not full.any():
            base = np.floor(share).astype(np.int64)
            short = left - int(base.sum())
            order = np.lexsort((np.arange(len(caps)), -(share - base)))
            base[order[:short]] += 1
            quotas += base
            break
        left -= int((caps - quotas)[full].sum())
        quotas[full] = caps[full]  # taken whole; the rest re-split over the open groups
        open_ &= ~full
    return quotas


def allocate_official(sizes: np.ndarray, fraction: float) -> np.ndarray:
    """The official Small2Large rule: ``ceil(n_c / round(100 / pct))`` from every group.

    ``subset.py`` keeps ``np.array_split(sorted_cluster, round(100 / pct))[0]``, i.e. the first
    ``ceil(n_c / m)`` rows: every non-empty group gives at least one, so the total exceeds the
    budget (Alpaca "10%" -> 5,667 of 52,002). ``round`` is Python's, as in the original.

    >>> allocate_official(np.array([1, 9, 23]), 0.10).tolist()
    [1, 1, 3]
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"official rounding needs a budget fraction in (0, 1], got {fraction!r}")
    m = max(1, round(100 / (fraction * 100)))
    sizes = np.asarray(sizes, dtype=np.int64)
    return -(-sizes // m)


# ---------------------------------------------------------------------------------- data types


@dataclass
class ScoreTable:
    """The scores a selector reads: one row per example, keyed by id, in pool order.

    ids:       list[str] (n,), unique; row i of every column belongs to ``ids[i]``.
    columns:   name -> numpy array with n rows. Signals are float64 (n,) (NaN where missing);
               list signals are 2-D float arrays, e.g. ``trajectory`` (n, n_checkpoints) and
               ``embedding`` float32 (n, d); ``cluster`` is int (n,); ``source`` is str (n,).
    truncated: bool (n,): the response was fully truncated away. Such rows are left out unless a
               selector is built with ``include_truncated=True``. ``None`` takes the
               ``truncated`` column if there is one, else all False.
    reference: the reference set's own table (what the user wants the model to be good at), for
               target-aware selectors such as ``rds``: its ids, and columns such as
               ``rds`` float32 (m, d) and ``group`` str (m,). None when the run has no
               reference set.
    na_reason: column -> str (n,): why the signal does not apply to a row ("text record has no
               prompt"; "" where it does); such rows are NaN and excluded with that reason.
    """

    ids: list[str]
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    truncated: np.ndarray | None = None
    reference: "ScoreTable | None" = None
    na_reason: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = list(self.ids)
        n = len(self.ids)
        if len(set(self.ids)) != n:
            seen: set[str] = set()
            dups = [i for i in self.ids if i in seen or seen.add(i)]
            raise ValueError(f"score table: duplicate ids {sorted(set(dups))[:5]} "
                             f"({len(dups)} duplicate rows)")
        columns = {}
        for name, values in dict(self.columns).items():
            arr = np.asarray(values)
            if arr.dtype == object and arr.ndim == 1 and n and not isinstance(arr[0], str):
                # A list-column read row by row: stack it into (n, length).
                try:
                    arr = np.array([np.asarray(v, dtype=np.float64) for v in arr])
                except ValueError as e:
                    raise ValueError(f"score table: list column '{name}' has rows of different "
                                     f"lengths") from e
            if arr.ndim == 0 or arr.shape[0] != n:
                raise ValueError(f"score table: column '{name}' has {arr.shape[:1] or 'no'} rows, "
                                 f"expected {n} (one per id)")
            columns[name] = arr
        if self.truncated is None:
            self.truncated = columns.pop("truncated", np.zeros(n, dtype=bool))
        truncated = np.asarray(self.truncated)
        if truncated.shape != (n,):
            raise ValueError(f"score table: truncated must have shape ({n},), got {truncated.shape}")
        self.truncated = truncated.astype(bool)
        self.columns = columns
        if self.reference is not None and not isinstance(self.reference, ScoreTable):
            raise ValueError(f"score table: reference must be a ScoreTable or None, got "
                             f"{type(self.reference).__name__}")

    @property
    def n(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray) -> "ScoreTable":
        """The table of the given row indices (in that order), e.g. a parent selection's kept rows."""
        rows = np.asarray(rows, dtype=np.int64)
        return ScoreTable(ids=[self.ids[i] for i in rows],
                          columns={k: v[rows] for k, v in self.columns.items()},
                          truncated=self.truncated[rows], reference=self.reference,
                          na_reason={k: v[rows] for k, v in self.na_reason.items()})

    def column(self, name: str) -> np.ndarray:
        """The column ``name``; a clear error naming the columns there are if it is missing."""
        try:
            return self.columns[name]
        except KeyError:
            have = ", ".join(sorted(self.columns)) or "none"
            raise ValueError(f"the score table has no column '{name}' (columns: {have})") from None

    @classmethod
    def from_arrow(cls, table: Any, id_column: str = "id") -> "ScoreTable":
        """Build from a pyarrow Table such as ``scores.parquet``: list columns become 2-D arrays
        (``store.run.list_matrix``: null rows NaN, rows of different lengths an error)."""
        ids = [str(v) for v in table.column(id_column).to_pylist()]
        columns: dict[str, np.ndarray] = {}
        for name in table.column_names:
            if name == id_column:
                continue
            col = table.column(name).combine_chunks()
            if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) \
                    or pa.types.is_fixed_size_list(col.type):
                columns[name] = list_matrix(col, name)
            elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                columns[name] = np.asarray(col.to_pylist(), dtype=object)
            elif pa.types.is_floating(col.type):
                columns[name] = col.to_numpy(zero_copy_only=False).astype(np.float64)
            else:
                columns[name] = col.to_numpy(zero_copy_only=False)
        return cls(ids=ids, columns=columns)


@dataclass
class Selection:
    """The outcome of one selector run: one row per pool id, in pool order.

    ids:      list[str] (n,), as in the score table.
    selected: bool (n,).
    rank:     int64 (n,): 1 = most preferred within the row's group (its cluster, or the whole pool
              for unclustered selectors; for random samplers, the draw order); -1 when the row was
              not a candidate or the method gives it no order.
    cluster:  int64 (n,): the cluster the row was assigned to, -1 when none.
    reason:   list[str] (n,): why the row was kept or dropped, e.g.
              ``"cluster 17: lp=0.12, rank 3 of 40, kept"`` or ``"excluded: signal is NaN"``.
    method, params: the selector's registry name and parameters; budget: the resolved budget.
    count:    int64 (n,) draws per row when sampling with replacement, else None.
    notes:    run-level remarks (a lowered k, an official-rounding total above the budget, ...).
    """

    ids: list[str]
    selected: np.ndarray
    rank: np.ndarray
    cluster: np.ndarray
    reason: list[str]
    method: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    budget: int = 0
    count: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n_selected(self) -> int:
        return int(self.selected.sum())

    @property
    def selected_ids(self) -> list[str]:
        """Ids of the selected rows, in pool order."""
        return [self.ids[i] for i in np.flatnonzero(self.selected)]

    def to_arrow(self) -> Any:
        """The ``selection.parquet`` table: id, selected, rank, cluster, reason (+ count)."""
        data = {"id": pa.array(self.ids, pa.string()), "selected": pa.array(self.selected),
                "rank": pa.array(self.rank, pa.int64()), "cluster": pa.array(self.cluster, pa.int64()),
                "reason": pa.array(self.reason, pa.string())}
        if self.count is not None:
            data["count"] = pa.array(self.count, pa.int64())
        return pa.table(data)


# ------------------------------------------------------------------------------------ selectors


def check_int(name: str, value: Any, minimum: int, *, optional: bool = False) -> None:
    """ValueError unless ``value`` is an integer (not a bool) >= ``minimum`` (or None if ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be {'None or ' if optional else ''}an integer >= {minimum}, "
                         f"got {value!r}")


def split_rngs(seed: Any) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent generators from one seed: (for clustering, for the selection itself).

    Separate streams keep the k-means draw from shifting when a selector changes how many random
    numbers it uses, and vice versa.
    """
    if isinstance(seed, (bool, np.bool_)):
        raise ValueError(f"seed must be an int, SeedSequence or Generator, got {seed!r}")
    if isinstance(seed, np.random.Generator):
        a, b = seed.spawn(2)
        return a, b
    if seed is None:
        raise ValueError("seed must be given (an int): selections are always seeded")
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    a, b = ss.spawn(2)
    return np.random.default_rng(a), np.random.default_rng(b)


def _nonfinite_rows(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows holding a NaN, rows holding an inf but no NaN), in row blocks so that a
    (1M, 384) embedding column needs no full-size boolean temporary."""
    n = col.shape[0]
    flat = col.reshape(n, -1)
    nan = np.zeros(n, dtype=bool)
    inf = np.zeros(n, dtype=bool)
    step = max(1, (1 << 22) // max(1, flat.shape[1]))
    for i in range(0, n, step):
        block = flat[i:i + step]
        nan[i:i + step] = np.isnan(block).any(axis=1)
        inf[i:i + step] = np.isinf(block).any(axis=1)
    return nan, inf & ~nan


def format_value(v: float) -> str:
    return f"{v:.4g}"


@dataclass(frozen=True)
class NoParams:
    """The parameters of a selector that takes none."""


class Selector:
    """Base class: parameters in ``__init__``, all work in ``select`` (scikit-learn style).

    A subclass is registered with ``@register_selector("name")`` and declares, for everyone else to
    ask (config validation, the command line, ``run`` preflight, ``bench``, the report):

    - ``Params``: a frozen dataclass of ``option`` fields, its parameters with their defaults, help
      text and checks; ``Selector(**params)`` builds and validates it and sets each field as an
      attribute;
    - ``reads()``: the columns it needs (score columns and vector sets such as ``embedding``);
    - ``required_columns()``: those of them whose NaN/inf rows are left out;
    - ``needs_reference``: it reads the reference set (``ScoreTable.reference``);
    - ``stratify_field()``: the record field it splits the budget by, if any.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    needs_reference: ClassVar[bool] = False
    include_truncated: bool = False
    #: Name the column in the reason of a NaN/inf row (``excluded: signal 'ppl' is NaN``), for
    #: selectors that read several signals; the others say ``excluded: signal is NaN``.
    name_signals: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.params = self.Params(**params)
        for f in dataclasses.fields(self.params):
            setattr(self, f.name, getattr(self.params, f.name))

    @classmethod
    def param_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls.Params)]

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """Each parameter's default value (before ``__post_init__`` adjusts it)."""
        return {name: default for name, _, default, _, _ in iter_fields(cls.Params)}

    def required_columns(self) -> tuple[str, ...]:
        """Signal columns whose NaN/inf rows are excluded from the candidates."""
        return ()

    def reads(self) -> tuple[str, ...]:
        """Every column the selector reads from the run (the required ones, plus e.g. ``cluster``)."""
        return self.required_columns()

    def stratify_field(self) -> str | None:
        """The input records' field the budget is split by (None: no stratification)."""
        return None

    def select(self, table: ScoreTable, budget: float | int, *, seed: Any = 0) -> Selection:
        """Pick ``budget`` examples of ``table``. ``seed`` (int or Generator) drives every random
        choice, including k-means; the same table, budget and seed give the same selection."""
        raise NotImplementedError

    def get_params(self) -> dict[str, Any]:
        """The parameters and their values (saved in the selection's meta)."""
        return dataclasses.asdict(self.params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- shared steps ------------------------------------------------------------------------

    def _candidates(self, table: ScoreTable, columns: Iterable[str]) -> tuple[np.ndarray, list[str]]:
        """(bool (n,) candidate mask, reason per row: "" for candidates)."""
        n = table.n
        reason = [""] * n
        ok = np.ones(n, dtype=bool)
        if not self.include_truncated:
            # First: a truncated row's signals are NaN because of the truncation, and the reason
            # should say so (not "signal is NaN", which reads as a broken model).
            for i in np.flatnonzero(table.truncated):
                reason[i] = EXCLUDED_TRUNCATED
            ok &= ~table.truncated
        for name in columns:
            col = table.column(name)
            if col.dtype.kind not in "fiub":
                raise ValueError(f"column '{name}' must be numeric, got dtype {col.dtype}")
            if col.dtype.kind == "f":
                nan, inf = _nonfinite_rows(col)
                signal = f"signal '{name}'" if self.name_signals else "signal"
                na = table.na_reason.get(name)
                for i in np.flatnonzero(nan & ok):
                    why = na[i] if na is not None else ""
                    reason[i] = (f"excluded: not applicable ({why})" if why
                                 else EXCLUDED_NAN.replace("signal", signal))
                for i in np.flatnonzero(inf & ok):
                    reason[i] = EXCLUDED_INF.replace("signal", signal)
                ok &= ~(nan | inf)
        return ok, reason

    def _budget(self, budget: float | int, table: ScoreTable, n_candidates: int, why: str = "") -> int:
        """Resolve the budget against the pool size and check it fits the candidates."""
        k = resolve_budget(budget, table.n)
        if n_candidates == 0:
            raise ValueError(f"{self.name}: no candidates: all {table.n} rows are excluded"
                             f" (NaN/inf signal or truncated){why}")
        if k > n_candidates:
            raise ValueError(f"{self.name}: budget {k} is larger than the {n_candidates} candidates "
                             f"({table.n - n_candidates} of {table.n} rows are not candidates{why}); "
                             f"lower the budget")
        return k

    def _selection(self, table: ScoreTable, selected: np.ndarray, rank: np.ndarray,
                   cluster: np.ndarray, reason: list[str], budget: int, notes: list[str],
                   count: np.ndarray | None = None) -> Selection:
        return Selection(ids=list(table.ids), selected=selected, rank=rank, cluster=cluster,
                         reason=reason, method=self.name, params=self.get_params(), budget=budget,
                         count=count, notes=notes)


def cluster_column(table: ScoreTable) -> np.ndarray:
    """The ``cluster`` column as int64 (n,), -1 where missing (NaN, as a parquet null reads)."""
    col = np.asarray(table.column("cluster"))
    if col.ndim != 1 or col.dtype.kind not in "iuf":
        raise ValueError(f"column 'cluster' must hold integer labels, got dtype {col.dtype}, "
                         f"shape {col.shape}")
    if col.dtype.kind == "f":
        known = np.isfinite(col)
        if (col[known] != np.round(col[known])).any():
            raise ValueError("column 'cluster' holds non-integer labels")
        out = np.full(col.shape[0], -1, dtype=np.int64)
        out[known] = col[known].astype(np.int64)
        return out
    return col.astype(np.int64)


class ClusterMixin:
    """Cluster labels for the candidates: k-means on a feature column, or the ``cluster`` column."""

    name: ClassVar[str]
    clusters: int | None
    cluster_features: str
    kmeans_iter: int

    def _cluster_labels(self, table: ScoreTable, rows: np.ndarray, rng: np.random.Generator,
                        notes: list[str]) -> np.ndarray:
        """int64 labels (len(rows),) for the given row indices."""
        if getattr(self, "cluster_by", "kmeans") == "reference":
            return self._reference_groups(table, rows, notes)[0]
        if self.clusters is None:
            if "cluster" not in table.columns:
                raise ValueError(
                    f"{self.name}: the score table has no 'cluster' column; pass clusters=K to "
                    f"run k-means with K clusters on the '{self.cluster_features}' column")
            labels = cluster_column(table)[rows]
            missing = int((labels < 0).sum())
            if missing:
                raise ValueError(f"{self.name}: column 'cluster' has no label (missing or negative) "
                                 f"for {missing} candidate rows")
            return labels
        return self._kmeans(table, rows, self.clusters, rng, notes)

    def _reference_groups(self, table: ScoreTable, rows: np.ndarray,
                          notes: list[str]) -> tuple[np.ndarray, list[str]]:
        """Every row's nearest reference group (``cluster.nearest_group`` on ``cluster_features``):
        (int64 labels (len(rows),), the group names the labels index)."""
        ref, feature = table.reference, self.cluster_features
        if ref is None:
            raise ValueError(f"{self.name}: cluster_by=reference takes its groups from a reference set; "
                             "give one (--reference FILE, reference: in a config)")
        if feature not in ref.columns:
            raise ValueError(f"{self.name}: the reference set has no '{feature}' vectors; embed it with "
                             f"the pool's model: proxysel score DATA --signals {feature} --reference REF "
                             "--out RUN")
        groups = ref.column("group")
        n_groups = len(set(groups.tolist()))
        if n_groups < 2:
            raise ValueError(f"{self.name}: cluster_by=reference needs reference records in two or more "
                             "groups (a group, family, category, source or task field); these name "
                             f"{n_groups}")
        vectors, pool = ref.column(feature), table.column(feature)
        if vectors.ndim != 2 or pool.ndim != 2 or vectors.shape[1] != pool.shape[1]:
            raise ValueError(f"{self.name}: the reference's {feature} has shape {vectors.shape}, the "
                             f"pool's {pool.shape}; embed both with the same model")
        ok = np.isfinite(vectors).all(axis=1)
        if not ok.all():
            notes.append(f"{int((~ok).sum())} of {ref.n} reference rows left out ({feature} not finite)")
        labels, names = nearest_group(_candidate_rows(pool, rows), vectors[ok], groups[ok])
        counts = np.bincount(labels, minlength=len(names)).tolist()
        groups_text = ", ".join(f"{i} {g} ({c})" for i, (g, c) in enumerate(zip(names, counts)))
        notes.append(f"groups from the reference set (nearest centroid of {feature}): {groups_text}")
        return labels, names

    def _kmeans(self, table: ScoreTable, rows: np.ndarray, k: int, rng: np.random.Generator,
                notes: list[str]) -> np.ndarray:
        feats = table.column(self.cluster_features)
        if feats.ndim != 2:
            raise ValueError(f"{self.name}: column '{self.cluster_features}' must be 2-D "
                             f"(n, dim) to cluster on, got shape {feats.shape}")
        x = _candidate_rows(feats, rows)
        if k > len(rows):
            notes.append(f"k={k} lowered to the {len(rows)} rows clustered")
            k = len(rows)
        return kmeans(x, k, seed=rng, n_iter=self.kmeans_iter, backend=getattr(self, "kmeans", "auto"))


def _candidate_rows(feats: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``feats[rows]``, but ``feats`` itself when every row is a candidate (the usual case): no copy
    of a (1M, 384) embedding matrix."""
    return feats if len(rows) == feats.shape[0] else feats[rows]


KMEANS_BACKENDS = ("numpy", "sklearn", "faiss")
#: what a selector that drops candidates by a rule does when fewer than the budget are left (on_short)
ON_SHORT = ("error", "keep")
ON_SHORT_HELP = ("when fewer than the budget pass the selector's rule (ifd: IFD < 1; top: at_least, "
                 "at_most): error, or keep them all")
#: where a ranking selector's clusters come from (RankingParams.cluster_by)
CLUSTER_BYS = ("kmeans", "reference")


def official_option() -> Any:
    """The ``official`` parameter of the selectors that have an official implementation (lp, lp_app,
    s2l): set, it puts every parameter at the official code's value (docs/methods.md)."""
    return option(False, "the official code's settings over the values given (lp/lp_app: 1,000 clusters "
                         "by scikit-learn KMeans and the official per-cluster rounding; s2l: faiss k-means, "
                         "stratified by source; docs/methods.md)")


@dataclass(frozen=True)
class ClusterParams:
    """What every clustered selector shares: how the clusters are made."""

    clusters: int | None = option(None, "k-means clusters K (lp/lp_app: over the embeddings, default 100; "
                                        "s2l: over the trajectories, default 100); null: the scores' own "
                                        "cluster column", minimum=1)
    cluster_features: str = option("embedding", "the 2-D column k-means reads (embedding, trajectory, ...)")
    kmeans: str = option("numpy", "k-means backend: numpy (proxysel's, seeded), sklearn (KMeans, k-means++ "
                                  "as the official LP code) or faiss (as the official S2L code)",
                         choices=KMEANS_BACKENDS)
    kmeans_iter: int = option(20, "Lloyd iterations of k-means", minimum=1)
    include_truncated: bool = option(False, "let fully truncated examples compete (their signal must still "
                                            "be finite; default: left out)")

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class RankingParams(ClusterParams):
    """The parameters of every ``RankingSelector``."""

    within_clusters: bool = option(False, "rank inside clusters, the budget split in proportion to their "
                                          "size, or size ** size_power (with clusters: K over "
                                          "cluster_features)",
                                   negative="--global")
    rounding: str = option("exact", "exact: the budget is met exactly (largest remainders across clusters); "
                                    "official: ceil(n_c / round(100/pct)) per cluster, as Small2Large's "
                                    "subset.py",
                           choices=("exact", "official"))
    size_power: float = option(1.0, "with within_clusters: each cluster's quota in proportion to size ** p, "
                                    "capped at its size: 1 proportional, 0.5 square root (temperature "
                                    "sampling), 0 equal (docs/methods.md)", minimum=0.0, maximum=1.0)
    cluster_by: str = option("kmeans", "with within_clusters: kmeans: k-means (clusters: K over "
                                       "cluster_features; null: the scores' cluster column); reference: "
                                       "the reference set's groups (its group, family, category, source or "
                                       "task field), every row joining the group whose centroid of "
                                       "cluster_features vectors is nearest (docs/methods.md)",
                             choices=CLUSTER_BYS)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cluster_by == "reference":
            if not self.within_clusters:
                raise FieldError("cluster_by", "(=reference) only applies with within_clusters=True")
            if self.clusters == type(self).__dataclass_fields__["clusters"].default:
                object.__setattr__(self, "clusters", None)  # the selector's default K: not used here
            if self.clusters is not None:
                raise FieldError("clusters", f"(={self.clusters}) is k-means's K; with cluster_by=reference "
                                             "the groups come from the reference set: leave clusters out")
        if self.clusters is not None and not self.within_clusters:
            raise FieldError("clusters", f"(={self.clusters}) only applies with within_clusters=True")
        if self.size_power != 1.0 and not self.within_clusters:
            raise FieldError("size_power", f"(={self.size_power}) only applies with within_clusters=True")
        if self.size_power != 1.0 and self.rounding == "official":
            raise FieldError("size_power", "the official rounding is proportional; use rounding=exact")


class RankingSelector(ClusterMixin, Selector):
    """A selector that orders candidates, then keeps the first ``budget``, over the whole pool or
    (``within_clusters=True``) cluster by cluster with the budget split in proportion to cluster
    size.

    Subclasses set ``signal`` (the column read, or None) and implement ``_order``.

    Its parameters are ``RankingParams`` (within_clusters, clusters, cluster_features, kmeans,
    kmeans_iter, rounding, include_truncated); k-means is seeded by ``seed``.
    """

    signal: str | None = None
    Params = RankingParams

    @property
    def needs_reference(self) -> bool:  # type: ignore[override]
        return self._reference_clusters

    @property
    def _reference_clusters(self) -> bool:
        return self.within_clusters and self.cluster_by == "reference"

    def required_columns(self) -> tuple[str, ...]:
        cols = (self.signal,) if self.signal else ()
        if self.within_clusters and (self.clusters is not None or self._reference_clusters):
            cols += (self.cluster_features,)  # k-means and the nearest group need finite features
        return cols

    def reads(self) -> tuple[str, ...]:
        uses_column = self.within_clusters and self.clusters is None and not self._reference_clusters
        return self.required_columns() + (("cluster",) if uses_column else ())

    @property
    def label(self) -> str:
        return self.signal or ""

    def _order(self, values: np.ndarray | None, m: int, rng: np.random.Generator) -> np.ndarray:
        """Positions 0..m-1 of one group's m candidates (given in pool order, with their signal
        ``values`` or None) in preference order.

        Ties must keep pool order (``argsort(kind="stable")``).
        """
        raise NotImplementedError

    def _filter(self, table: ScoreTable, candidates: np.ndarray, reason: list[str]) -> np.ndarray:
        """Hook for selectors that drop some candidates by rule (IFD >= 1); returns the new mask."""
        return candidates

    def _short_budget(self, table: ScoreTable, n_candidates: int, budget: float | int) -> int | None:
        """A budget to use when it exceeds the candidates left after ``_filter``: all of them for a
        selector whose ``on_short`` is ``keep`` (ifd, top with a threshold), else None (raise)."""
        return n_candidates if getattr(self, "on_short", "error") == "keep" and n_candidates > 0 else None

    def _draw(self, rows: np.ndarray, k: int, rng: np.random.Generator, reason: list[str],
              notes: list[str]) -> np.ndarray:
        """Hook for selectors that rank only a random part of the candidates (CoLoR-Filter's tau):
        the candidate row indices (pool order) to rank, given the resolved budget ``k``. Rows
        left out must get their reason here."""
        return rows

    def _values(self, table: ScoreTable, rows: np.ndarray, notes: list[str]) -> np.ndarray | None:
        """float64 (len(rows),): what ``_order`` ranks the candidate ``rows`` by (the ``signal``
        column; None when there is no signal). A hook for selectors that combine columns."""
        if not self.signal:
            return None
        column = table.column(self.signal)
        if column.ndim != 1:
            raise ValueError(f"{self.name}: signal column '{self.signal}' must be 1-D, got "
                             f"shape {column.shape}")
        return column[rows].astype(np.float64)

    def select(self, table: ScoreTable, budget: float | int, *, seed: Any = 0) -> Selection:
        cluster_rng, rng = split_rngs(seed)
        candidates, reason = self._candidates(table, self.required_columns())
        candidates = self._filter(table, candidates, reason)
        rows = np.flatnonzero(candidates)
        notes: list[str] = []
        k = self._resolve(table, budget, len(rows), notes)
        rows = self._draw(rows, k, rng, reason, notes)
        values = self._values(table, rows, notes)

        n = table.n
        cluster = np.full(n, -1, dtype=np.int64)
        names: list[str] | None = None  # the reference groups' names, for the reasons
        if self.within_clusters:
            if self._reference_clusters:
                labels, names = self._reference_groups(table, rows, notes)
            else:
                labels = self._cluster_labels(table, rows, cluster_rng, notes)
                if self.clusters is None:
                    cluster[:] = cluster_column(table)
            cluster[rows] = labels
            group_ids, group_of = np.unique(labels, return_inverse=True)
        else:
            group_ids, group_of = np.array([-1]), np.zeros(len(rows), dtype=np.int64)
        sizes = np.bincount(group_of, minlength=len(group_ids))
        if self.rounding == "official":
            quotas = allocate_official(sizes, k / n if isinstance(budget, (int, np.integer))
                                       else float(budget))
            total = int(quotas.sum())
            if total != k:
                notes.append(f"official rounding kept {total} for a budget of {k}")
            k = total
        else:
            quotas = allocate_by_power(sizes, k, self.size_power)

        selected = np.zeros(n, dtype=bool)
        rank = np.full(n, -1, dtype=np.int64)
        by_group = np.argsort(group_of, kind="stable")  # candidates grouped, pool order inside
        bounds = np.concatenate(([0], np.cumsum(sizes)))
        for g in range(len(group_ids)):
            members = by_group[bounds[g]:bounds[g + 1]]
            order = self._order(None if values is None else values[members], len(members), rng)
            ranked = rows[members[order]]
            rank[ranked] = np.arange(1, len(ranked) + 1)
            selected[ranked[:quotas[g]]] = True

        self._write_reasons(reason, rows, values, rank, selected, cluster, sizes[group_of], names)
        return self._selection(table, selected, rank, cluster, reason, k, notes)

    def _resolve(self, table: ScoreTable, budget: float | int, n_candidates: int,
                 notes: list[str]) -> int:
        k = resolve_budget(budget, table.n)
        if 0 < n_candidates < k:
            short = self._short_budget(table, n_candidates, budget)
            if short is not None:
                notes.append(f"budget lowered to the {short} candidates")
                return short
        return self._budget(budget, table, n_candidates)

    def _write_reasons(self, reason: list[str], rows: np.ndarray, values: np.ndarray | None,
                       rank: np.ndarray, selected: np.ndarray, cluster: np.ndarray,
                       group_size: np.ndarray, names: list[str] | None = None) -> None:
        """One reason per candidate: its cluster (its reference group by name, given ``names``), its
        signal value, its rank in its cluster and whether it was kept."""
        label = self.label
        r = rank[rows].tolist()
        kept = selected[rows].tolist()
        sizes = group_size.tolist()
        vals = ([f"{label}={format_value(v)}, " for v in values.tolist()] if values is not None
                else ["random order, "] * len(rows))
        if self.within_clusters:
            cl = cluster[rows].tolist()
            where = [f"cluster {c}" if names is None else f"group '{names[c]}'" for c in cl]
            for j, i in enumerate(rows.tolist()):
                reason[i] = (f"{where[j]}: {vals[j]}rank {r[j]} of {sizes[j]}, "
                             f"{'kept' if kept[j] else 'dropped'}")
        else:
            for j, i in enumerate(rows.tolist()):
                reason[i] = f"{vals[j]}rank {r[j]} of {sizes[j]}, {'kept' if kept[j] else 'dropped'}"
