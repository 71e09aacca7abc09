"""The pool of the ``skewed`` bench preset: skewed family sizes, paraphrased redundancy, known noise.

``make_sets`` returns three lists of Alpaca records: the *pool* the selectors choose from, a small
clean *reference* set (what the user wants the model to be good at; only target-aware selectors
read it) and a clean, family-balanced *eval* set that no selector reads. Every record is
``{"id", "instruction", "output", "family", "shape", "difficulty", "noise", "dup_of"}``:

- ``shape``: ``string``, ``numeric``, ``lookup`` or ``multi-step`` (``garbage`` for garbage);
- ``difficulty``: 1 easy .. 3 hard (0 for garbage);
- ``noise``: ``clean``, ``wrong``, ``garbage``, ``near_duplicate`` or ``duplicate``;
- ``dup_of``: for the two kinds of duplicate, the id of the clean pool record repeated; else None.

Families (letters a-l, A-L, m-x and digits are one token each, space included, with the preset's
512-token scratch tokenizer; ``x`` is the task's input; three instruction templates per family,
the input last in each; inputs have distinct items except in ``add`` and ``sort_first``):

| family | shape | share | instruction (one of three templates) | answer | difficulty 1 / 2 / 3 |
|---|---|---|---|---|---|
| copy | string | 0.43 | ``Copy: c a f`` | ``c a f`` | 3 / 4 / 6 letters |
| reverse | string | 0.11 | ``Write backwards: c a f`` | ``f a c`` | 3 / 4 / 6 letters |
| compare | numeric | 0.09 | ``Largest of 4, 7 or 2`` | ``7`` | 3 / 4 / 6 digits |
| add | numeric | 0.09 | ``Add one to each: 3 0 8`` | ``4 1 9`` | 3 / 4 / 6 digits 0-8 |
| opposite | lookup | 0.07 | ``Opposite: hot up`` | ``cold down`` | 2 / 3 / 4 words |
| upper | string | 0.06 | ``Uppercase: c a f`` | ``C A F`` | 3 / 4 / 6 letters |
| count | numeric | 0.04 | ``How many letters: c a f`` | ``3`` | 3 / 5 / 7 letters |
| sort_first | multi-step | 0.04 | ``Sort, then take the first: 5 2 9`` | ``2`` | 3 / 5 / 7 digits |
| rev_upper | multi-step | 0.04 | ``Reverse, then uppercase: c a f`` | ``F A C`` | 3 / 4 / 6 letters |
| code | lookup | 0.03 | ``Encode: c a f`` | ``r t m`` | 3 / 4 / 6 letters |

The shares are Zipf-like, as family sizes are in real instruction pools: with the default noise
the largest family holds over 40% of the pool and the smallest under 3% (57 of 2,000 records).
The lookup families must be memorised from the pool (``CODE`` and ``OPPOSITES`` are fixed
tables), so a subset that starves them cannot answer them. The tasks were shaped with
``benchmarks/calibrate_skewed.py`` until a 0.47M-parameter scratch Llama learns every family from
the full pool (benchmarks/RESULTS.md): e.g. multi-digit numbers were dropped, because copying
them was not learned in the time, and the items of an input are distinct.

Pool noise, at exact rates of the pool size (rounded to whole records):
- ``garbage``: random printable characters as instruction and answer (family ``garbage``);
- ``wrong``: a well-formed task whose answer has one item changed (a letter, word or digit);
- ``near_duplicate``: a clean pool task again in another of its family's templates (a paraphrase,
  same answer);
- ``duplicate``: an exact copy of a clean pool record under another id.
All but garbage are spread over the families in proportion to their sizes, so they keep the skew.
The rest of each family is clean, spread evenly over the difficulties.

Disjointness: a task is its family and its input (``c a f``); no task occurs in two of the three
sets, so no eval record equals or paraphrases a pool or reference record (``normalise`` is the
textual check the bench's leakage test uses). The same arguments always give the same records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from proxysel.benchmarking.synthetic import LETTERS, garbage_pair

NOISE_TYPES = ("wrong", "garbage", "near_duplicate", "duplicate")
SHAPES = ("string", "numeric", "lookup", "multi-step")
DIGITS = "0123456789"
#: the ``code`` family's substitution table: a fixed permutation of m-x (disjoint from a-l and A-L)
CODE = dict(zip(LETTERS, "tqrxnmvospuw"))
#: the ``opposite`` family's table, both directions
OPPOSITES = dict(p for a, b in (("hot", "cold"), ("big", "small"), ("up", "down"), ("old", "new"),
                                ("day", "night"), ("in", "out"))
                 for p in ((a, b), (b, a)))

Task = tuple[Any, ...]  # the input of one task: its letters, digits or words, in order


@dataclass(frozen=True)
class Family:
    """One task family: how to draw an input of a difficulty, show it, and answer it."""

    name: str
    shape: str
    share: float  # of the pool's non-garbage records
    templates: tuple[str, ...]  # each with one "{x}", where the input goes
    draw: Callable[[int, np.random.Generator], Task]  # (difficulty 1..3, rng) -> input
    solve: Callable[[Task], str]
    show: Callable[[Task], str] = " ".join  # the input as it appears in the instruction
    items: str | tuple[str, ...] = LETTERS  # what one answer item may be (wrong answers draw from it)


def _pick(symbols: str | tuple[str, ...], sizes: tuple[int, int, int], *, distinct: bool = True
          ) -> Callable[[int, np.random.Generator], Task]:
    """Draw ``sizes[d - 1]`` of ``symbols``. Distinct by default: an item the model has just written
    then occurs once in the input, so copying (and reversing, encoding...) is never ambiguous."""
    def draw(d: int, rng: np.random.Generator) -> Task:
        picks = rng.choice(len(symbols), sizes[d - 1], replace=not distinct)
        return tuple(symbols[int(i)] for i in picks)
    return draw


def _choices(task: Task) -> str:
    return ", ".join(task[:-1]) + f" or {task[-1]}"


_WORDS = tuple(OPPOSITES)

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("copy", "string", 0.43, ("Copy: {x}", "Repeat exactly: {x}", "Write again: {x}"),
           _pick(LETTERS, (3, 4, 6)), " ".join),
    Family("reverse", "string", 0.11, ("Reverse: {x}", "Write backwards: {x}", "Reverse the letters {x}"),
           _pick(LETTERS, (3, 4, 6)), lambda t: " ".join(t[::-1])),
    Family("compare", "numeric", 0.09,
           ("Largest of {x}", "Which is the largest: {x}?", "Pick the biggest: {x}"),
           _pick(DIGITS, (3, 4, 6)), max, show=_choices, items=DIGITS),
    Family("add", "numeric", 0.09, ("Add one to each: {x}", "Increase every digit by one: {x}",
                                    "Each digit plus 1: {x}"),
           _pick(DIGITS[:9], (3, 4, 6), distinct=False),  # digits 0-8: no carry
           lambda t: " ".join(str(int(c) + 1) for c in t), items=DIGITS),
    Family("opposite", "lookup", 0.07, ("Opposite: {x}", "Give the opposites of {x}", "Antonyms of {x}"),
           _pick(_WORDS, (2, 3, 4)), lambda t: " ".join(OPPOSITES[w] for w in t), items=_WORDS),
    Family("upper", "string", 0.06,
           ("Uppercase: {x}", "Write in capitals: {x}", "Capitalise the letters {x}"),
           _pick(LETTERS, (3, 4, 6)), lambda t: " ".join(t).upper(), items=LETTERS.upper()),
    Family("count", "numeric", 0.04, ("Count: {x}", "How many letters: {x}", "Number of letters in {x}"),
           _pick(LETTERS, (3, 5, 7)), lambda t: str(len(t)), items=DIGITS),
    Family("sort_first", "multi-step", 0.04, ("Sort, then take the first: {x}", "Smallest after sorting: {x}",
                                              "Sort and give the first: {x}"),
           _pick(DIGITS, (3, 5, 7), distinct=False), min, items=DIGITS),
    Family("rev_upper", "multi-step", 0.04, ("Reverse, then uppercase: {x}", "Backwards in capitals: {x}",
                                             "Reverse and capitalise {x}"),
           _pick(LETTERS, (3, 4, 6)), lambda t: " ".join(t[::-1]).upper(), items=LETTERS.upper()),
    Family("code", "lookup", 0.03, ("Encode: {x}", "Apply the code to {x}", "Write in code: {x}"),
           _pick(LETTERS, (3, 4, 6)), lambda t: " ".join(CODE[c] for c in t), items=tuple(CODE.values())),
)}


def instruction(family: str, task: Task, template: int) -> str:
    """The instruction of ``task`` in template ``template`` of ``family``."""
    f = FAMILIES[family]
    return f.templates[template].format(x=f.show(task))


def answer(family: str, task: Task) -> str:
    """The correct answer of ``task``."""
    return FAMILIES[family].solve(task)


def normalise(record: Mapping[str, Any]) -> str:
    """Instruction and output, lower-cased, with every run of whitespace one space: two records that
    give the same text here are the same example (the leakage check compares these)."""
    def flat(text: Any) -> str:
        return " ".join(str(text).lower().split())

    return flat(record["instruction"]) + "\n" + flat(record["output"])


def wrong_answer(family: str, task: Task, rng: np.random.Generator) -> str:
    """A well-formed wrong answer: one item of the correct answer (a letter, word or digit) replaced
    by another of the family's items."""
    f = FAMILIES[family]
    parts = f.solve(task).split(" ")
    pos = int(rng.integers(len(parts)))
    choices = [c for c in f.items if c != parts[pos]]
    parts[pos] = choices[int(rng.integers(len(choices)))]
    return " ".join(parts)


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainder; ties to the earlier weight)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    out = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - out), kind="stable")[: total - int(out.sum())]:
        out[i] += 1
    return out.tolist()


def noise_counts(n: int, rates: Mapping[str, float]) -> dict[str, int]:
    """Whole records of each noise type in a pool of ``n`` (rates: fractions, keys of NOISE_TYPES)."""
    unknown = set(rates) - set(NOISE_TYPES)
    if unknown:
        raise ValueError(f"unknown noise types {sorted(unknown)}; choose from {NOISE_TYPES}")
    counts = {k: int(round(rates.get(k, 0.0) * n)) for k in NOISE_TYPES}
    if sum(counts.values()) >= n:
        raise ValueError(f"noise rates {dict(rates)} leave no clean records in a pool of {n}")
    return counts


class _Drawer:
    """Draws fresh tasks: no (family, input) is handed out twice, across all three sets."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.taken: set[tuple[str, Task]] = set()

    def task(self, family: str, difficulty: int) -> Task:
        for _ in range(1000):
            task = FAMILIES[family].draw(difficulty, self.rng)
            if (family, task) not in self.taken:
                self.taken.add((family, task))
                return task
        raise ValueError(f"cannot draw enough distinct {family} tasks of difficulty {difficulty}")

    def template(self, family: str, avoid: int | None = None) -> int:
        choices = [k for k in range(len(FAMILIES[family].templates)) if k != avoid]
        return choices[int(self.rng.integers(len(choices)))]


def _record(family: str, task: Task, template: int, difficulty: int, noise: str, output: str | None = None
            ) -> dict[str, Any]:
    return {"instruction": instruction(family, task, template),
            "output": answer(family, task) if output is None else output, "family": family,
            "shape": FAMILIES[family].shape, "difficulty": difficulty, "noise": noise, "dup_of": None,
            "_task": task, "_template": template}


def _clean_set(drawer: _Drawer, per_family: int, prefix: str, families: Sequence[str]
               ) -> list[dict[str, Any]]:
    out = []
    for family in families:
        for k in range(per_family):
            d = k % 3 + 1
            out.append(_record(family, drawer.task(family, d), drawer.template(family), d, "clean"))
    return [_public({"id": f"{prefix}{i:05d}", **r}) for i, r in enumerate(out)]


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def make_sets(n_pool: int = 2000, *, n_eval_per_family: int = 40, n_reference_per_family: int = 20,
              noise: Mapping[str, float] | None = None, families: Sequence[str] | None = None,
              seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(pool, reference, eval): see the module docstring.

    n_pool: records in the pool, noise included. noise: rates of NOISE_TYPES (fractions of n_pool;
    default none). families: a subset of FAMILIES (default all), sized by their shares.
    Eval and reference are clean, ``n_*_per_family`` records per family, difficulties in turn.
    Ids: pool ``p00000..``, reference ``r00000..``, eval ``t00000..``; the pool is shuffled.
    """
    names = list(families or FAMILIES)
    for name in names:
        if name not in FAMILIES:
            raise ValueError(f"unknown skewed family {name!r}; choose from {', '.join(FAMILIES)}")
    rng = np.random.default_rng([seed, 13])
    drawer = _Drawer(rng)
    evals = _clean_set(drawer, n_eval_per_family, "t", names)
    reference = _clean_set(drawer, n_reference_per_family, "r", names)

    counts = noise_counts(n_pool, noise or {})
    sizes = apportion(n_pool - counts["garbage"], [FAMILIES[f].share for f in names])
    per_noise = {k: apportion(counts[k], sizes) for k in ("wrong", "near_duplicate", "duplicate")}
    records: list[dict[str, Any]] = []
    for i, family in enumerate(names):
        n_copies = per_noise["near_duplicate"][i] + per_noise["duplicate"][i]
        n_clean = sizes[i] - per_noise["wrong"][i] - n_copies
        if n_clean < max(1, n_copies):
            raise ValueError(f"family {family} has {sizes[i]} records: too few for its noise; "
                             "lower the rates")
        clean = []
        for k in range(n_clean):
            d = k % 3 + 1
            clean.append(_record(family, drawer.task(family, d), drawer.template(family), d, "clean"))
        for k in range(per_noise["wrong"][i]):
            d = k % 3 + 1
            task = drawer.task(family, d)
            records.append(_record(family, task, drawer.template(family), d, "wrong",
                                   output=wrong_answer(family, task, rng)))
        # each clean record is the source of at most one copy, so the redundancy is spread out
        sources = rng.choice(n_clean, n_copies, replace=False)
        for j, s in enumerate(sources):
            src = clean[int(s)]
            if j < per_noise["near_duplicate"][i]:
                copy = _record(family, src["_task"], drawer.template(family, avoid=src["_template"]),
                               src["difficulty"], "near_duplicate")
            else:
                copy = {**src, "noise": "duplicate"}
            copy["_src"] = src  # its id is known once the pool is shuffled
            records.append(copy)
        records.extend(clean)
    for _ in range(counts["garbage"]):
        text, out = garbage_pair(rng)
        records.append({"instruction": text, "output": out, "family": "garbage", "shape": "garbage",
                        "difficulty": 0, "noise": "garbage", "dup_of": None})
    order = rng.permutation(len(records))
    new_id = {id(records[j]): f"p{i:05d}" for i, j in enumerate(order)}  # keyed by object: copies are equal
    pool = []
    for j in order:
        r = records[j]
        dup_of = new_id[id(r["_src"])] if "_src" in r else None
        pool.append(_public({"id": new_id[id(r)], **r, "dup_of": dup_of}))
    return pool, reference, evals
