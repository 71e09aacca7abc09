"""The bench's three sets: the pool, an optional reference set and the eval set.

``data.kind: files`` names three paths. Every other kind is a registered generator that returns
the three record lists (``BenchSets``); the bench writes them to ``OUT/data/pool.jsonl``,
``reference.jsonl`` (when there is one) and ``eval.jsonl``. A new kind needs one function::

    @register_data_kind("mine", exact_answers=True)
    def mine(d: BenchDataConfig) -> BenchSets:
        return BenchSets(pool=[...], reference=[...], eval=[...])

Whatever the kind, the eval set is then checked against the pool and the reference set
(``check_leakage``): an eval record equal to one of theirs after normalisation
(``groups.normalised_text``) is a config error naming ``data.eval``.

Built-in kinds:

- ``synthetic``: ``benchmarking.synthetic``'s pool; the eval set and (``data.n_reference``) the
  reference set are clean, balanced over family x difficulty, and share no instruction with the
  pool or with each other.
- ``skewed``: ``benchmarking.skewed``'s pool (skewed family sizes, near-duplicates, known noise) with
  its clean, family-balanced reference and eval sets (``n_reference`` and ``n_eval`` split evenly
  over the families).
- ``sharegpt``: the first ``n_pool`` qualifying pairs of the ShareGPT file
  (``data.sharegpt_demo``) of at most ``max_chars`` characters; then, walking on in file order, the
  eval set (``n_eval`` pairs) and the reference set (``n_reference``) from the pairs after the
  pool. With ``data.category`` (a rule of ``groups.CATEGORY_RULES``, e.g. ``has_code``) those two
  are drawn only from that category, of at most ``category_max_chars`` characters. A pair whose
  normalised text equals one already taken (pool, eval or reference) is passed over, so the sets
  are disjoint in text and not only in ids (ShareGPT repeats prompts such as "hi").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from proxysel.benchmarking.groups import CATEGORY_RULES, find_leaks, normalise
from proxysel.benchmarking.skewed import FAMILIES as SKEWED_FAMILIES
from proxysel.benchmarking.skewed import make_sets
from proxysel.benchmarking.synthetic import make_pool, make_test_set
from proxysel.data.sharegpt_demo import iter_pairs, pair_chars
from proxysel.errors import UsageError
from proxysel.options import ConfigError
from proxysel.store.atomic import atomic_write_text

if TYPE_CHECKING:
    from proxysel.benchmarking.config import BenchDataConfig
    from proxysel.data.example import Pool

__all__ = ["BenchSets", "DATA_KINDS", "DataKind", "DataPaths", "check_leakage", "data_kinds", "prepare_data",
           "register_data_kind"]


@dataclass
class BenchSets:
    """The three record lists of a generated kind (JSON-able dicts, each with a unique ``id``)."""

    pool: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    reference: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class DataKind:
    """A registered generator. exact_answers: its answers are exact, so exact match is measured by
    default (``eval.exact_match: null``). has_reference: whether a config of this kind gives a
    reference set (checked before any work, for the selectors that need one)."""

    name: str
    make: Callable[["BenchDataConfig"], BenchSets]
    exact_answers: bool = False
    has_reference: Callable[["BenchDataConfig"], bool] = lambda d: d.n_reference > 0


DATA_KINDS: dict[str, DataKind] = {}


Generator = Callable[["BenchDataConfig"], BenchSets]


def register_data_kind(name: str, *, exact_answers: bool = False,
                       has_reference: Callable[["BenchDataConfig"], bool] | None = None
                       ) -> Callable[[Generator], Generator]:
    """Decorator: make ``fn(data_config) -> BenchSets`` the generator of ``data.kind: name``."""

    def decorate(fn: Generator) -> Generator:
        if name == "files" or (name in DATA_KINDS and DATA_KINDS[name].make is not fn):
            raise ValueError(f"data kind '{name}' is already registered")
        extra = {} if has_reference is None else {"has_reference": has_reference}
        DATA_KINDS[name] = DataKind(name, fn, exact_answers, **extra)
        return fn

    return decorate


def data_kinds() -> tuple[str, ...]:
    """Every ``data.kind``: ``files`` and the registered generators."""
    return ("files", *DATA_KINDS)


# ---------------------------------------------------------------------------------- generators


@register_data_kind("synthetic", exact_answers=True)
def synthetic_sets(d: "BenchDataConfig") -> BenchSets:
    noise = {"wrong": d.noise.wrong, "garbage": d.noise.garbage, "duplicate": d.noise.duplicate}
    shape = {"families": d.families, "difficulties": d.difficulties}
    pool = make_pool(d.n_pool, noise=noise, seed=d.seed, **shape)
    held_out = make_test_set(d.n_eval, pool, seed=d.seed, **shape)
    reference = make_test_set(d.n_reference, pool + held_out, seed=d.seed, stream=3, prefix="r", **shape) \
        if d.n_reference else []
    return BenchSets(pool=pool, eval=held_out, reference=reference)


@register_data_kind("skewed", exact_answers=True)
def skewed_sets(d: "BenchDataConfig") -> BenchSets:
    """``benchmarking.skewed``: ``n_eval`` and ``n_reference`` are split evenly over its families."""
    families = len(SKEWED_FAMILIES)
    for name in ("n_eval", "n_reference"):
        if getattr(d, name) % families:
            raise ConfigError(f"data.{name}", f"must be a multiple of the skewed pool's {families} families "
                                              f"(the eval and reference sets are family-balanced), got "
                                              f"{getattr(d, name)}")
    noise = {"wrong": d.noise.wrong, "garbage": d.noise.garbage, "near_duplicate": d.noise.near_duplicate,
             "duplicate": d.noise.duplicate}
    pool, reference, held_out = make_sets(d.n_pool, n_eval_per_family=d.n_eval // families,
                                          n_reference_per_family=d.n_reference // families, noise=noise,
                                          seed=d.seed)
    return BenchSets(pool=pool, eval=held_out, reference=reference)


def _key(pair: dict[str, Any]) -> str:
    return "\n".join(normalise(t["value"]) for t in pair["conversations"])


def _take(pairs: Iterator[dict[str, Any]], n: int, keep: Callable[[dict[str, Any]], bool],
          taken: set[str] | None, what: str) -> list[dict[str, Any]]:
    """The next ``n`` pairs that ``keep`` accepts and, unless ``taken`` is None, whose text is not
    ``taken`` yet (then added to it)."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        pair = next(pairs, None)
        if pair is None:
            raise UsageError(f"the ShareGPT file has only {len(out)} pairs for the {what} (asked for {n})")
        if not keep(pair):
            continue
        if taken is not None:
            key = _key(pair)
            if key in taken:
                continue
            taken.add(key)
        out.append(pair)
    return out


@register_data_kind("sharegpt")
def sharegpt_sets(d: "BenchDataConfig") -> BenchSets:
    def fits(limit: int | None) -> Callable[[dict[str, Any]], bool]:
        return lambda p: limit is None or pair_chars(p) <= limit

    pairs = iter_pairs()  # one pass over the 125 MB file
    pool = _take(pairs, d.n_pool, fits(d.max_chars), None, "pool")
    # the pool keeps ShareGPT's repeats, as the cpu preset always had; the other sets avoid them
    taken = {_key(p) for p in pool}
    if d.category is None:
        keep, what = fits(d.max_chars), ""
    else:
        limit, rule = d.category_max_chars or d.max_chars, CATEGORY_RULES[d.category]
        keep, what = (lambda p: fits(limit)(p) and rule([t["value"] for t in p["conversations"]])), \
            f" (category {d.category})"
    held_out = _take(pairs, d.n_eval, keep, taken, "eval set" + what)
    reference = _take(pairs, d.n_reference, keep, taken, "reference set" + what)
    pairs.close()
    return BenchSets(pool=pool, eval=held_out, reference=reference)


# --------------------------------------------------------------------------------- preparation


@dataclass(frozen=True)
class DataPaths:
    pool: Path
    eval: Path
    reference: Path | None


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)


def prepare_data(d: "BenchDataConfig", out: Path) -> DataPaths:
    """The paths of the three sets: ``files`` as given (each must exist), a generated kind written to
    ``out/data/`` (rewritten only when its bytes change, so the stages' fingerprints hold)."""
    if d.kind == "files":
        for name in ("pool", "reference", "eval"):
            path = getattr(d, name)
            if path is not None and not Path(path).exists():
                raise UsageError(f"config field 'data.{name}': {path} not found")
        return DataPaths(Path(d.pool), Path(d.eval), Path(d.reference) if d.reference else None)
    sets = DATA_KINDS[d.kind].make(d)
    folder = out / "data"
    _write_jsonl(folder / "pool.jsonl", sets.pool)
    _write_jsonl(folder / "eval.jsonl", sets.eval)
    ref = folder / "reference.jsonl"
    if sets.reference:
        _write_jsonl(ref, sets.reference)
    elif ref.exists():
        ref.unlink()  # a rerun without a reference set must not score against an old one
    return DataPaths(folder / "pool.jsonl", folder / "eval.jsonl", ref if sets.reference else None)


def check_leakage(pool: "Pool", held_out: "Pool", reference: "Pool | None" = None, *,
                  source: str | None = None) -> None:
    """ConfigError (exit code 2) naming ``data.eval`` when an eval record equals a pool or reference
    record after normalisation (``groups.normalised_text``): the count and the first ids."""
    leaks = find_leaks(held_out.examples, pool.examples, *([reference.examples] if reference else []))
    if leaks:
        first = ", ".join(f"{e} = {o}" for e, o in leaks[:5])
        raise ConfigError("data.eval", f"{len(leaks)} eval records equal a pool or reference record "
                                       f"after whitespace/case normalisation (first: {first}); the eval set "
                                       "must be disjoint from both", source)
