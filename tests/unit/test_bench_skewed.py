"""The skewed pool: determinism, skewed sizes, exact noise counts, three disjoint sets, right answers.

Answers are recomputed here from the instruction text alone, with this file's own parser and
tables, so a generator bug cannot hide behind its own solver.
"""

from __future__ import annotations

import collections
import re

import numpy as np
import pytest

from proxysel.benchmarking.skewed import FAMILIES, apportion, make_sets, normalise, wrong_answer

NOISE = {"wrong": 0.08, "garbage": 0.05, "near_duplicate": 0.10, "duplicate": 0.03}

# family -> the instruction templates as regexes with one group, the task's input
PATTERNS = {
    "copy": [r"Copy: (.+)", r"Repeat exactly: (.+)", r"Write again: (.+)"],
    "reverse": [r"Reverse: (.+)", r"Write backwards: (.+)", r"Reverse the letters (.+)"],
    "upper": [r"Uppercase: (.+)", r"Write in capitals: (.+)", r"Capitalise the letters (.+)"],
    "compare": [r"Largest of (.+)", r"Which is the largest: (.+)\?", r"Pick the biggest: (.+)"],
    "count": [r"Count: (.+)", r"How many letters: (.+)", r"Number of letters in (.+)"],
    "add": [r"Add one to each: (.+)", r"Increase every digit by one: (.+)", r"Each digit plus 1: (.+)"],
    "sort_first": [r"Sort, then take the first: (.+)", r"Smallest after sorting: (.+)",
                   r"Sort and give the first: (.+)"],
    "rev_upper": [r"Reverse, then uppercase: (.+)", r"Backwards in capitals: (.+)",
                  r"Reverse and capitalise (.+)"],
    "opposite": [r"Opposite: (.+)", r"Give the opposites of (.+)", r"Antonyms of (.+)"],
    "code": [r"Encode: (.+)", r"Apply the code to (.+)", r"Write in code: (.+)"],
}
PAIRS = ["hot cold", "big small", "up down", "old new", "day night", "in out"]
OPPOSITE = {**{p.split()[0]: p.split()[1] for p in PAIRS}, **{p.split()[1]: p.split()[0] for p in PAIRS}}
CODE = dict(zip("abcdefghijkl", "tqrxnmvospuw"))


def parse(record):
    """(template index, input text) of a record, from its family's patterns; exactly one must match."""
    hits = [(k, m.group(1)) for k, p in enumerate(PATTERNS[record["family"]])
            if (m := re.fullmatch(p, record["instruction"]))]
    assert len(hits) == 1, record
    return hits[0]


def solve(family, body):
    """(the correct answer, the input's items): what the instruction asks, computed here."""
    if family == "compare":  # "6, 2, 1 or 4"
        items = re.fullmatch(r"((?:\d, )*\d) or (\d)", body).group(1).split(", ") + [body[-1]]
        return max(items), items
    items = body.split()
    answers = {"copy": lambda: items, "reverse": lambda: items[::-1],
               "upper": lambda: [c.upper() for c in items], "count": lambda: [str(len(items))],
               "sort_first": lambda: sorted(items)[:1], "add": lambda: [str(int(c) + 1) for c in items],
               "rev_upper": lambda: [c.upper() for c in items[::-1]],
               "opposite": lambda: [OPPOSITE[w] for w in items], "code": lambda: [CODE[c] for c in items]}
    return " ".join(answers[family]()), items


SIZE = {  # input items per difficulty
    **{f: (3, 4, 6) for f in ("copy", "reverse", "upper", "rev_upper", "code", "compare", "add")},
    "count": (3, 5, 7), "sort_first": (3, 5, 7), "opposite": (2, 3, 4),
}
DISTINCT = {"copy", "reverse", "upper", "rev_upper", "code", "count", "compare", "opposite"}


@pytest.fixture(scope="module")
def sets():
    return make_sets(2000, noise=NOISE, seed=0)


def test_same_arguments_same_records(sets):
    assert make_sets(2000, noise=NOISE, seed=0) == sets
    other = make_sets(2000, noise=NOISE, seed=1)
    assert other[0] != sets[0] and other[2] != sets[2]


def test_sizes_are_skewed_and_noise_counts_exact(sets):
    pool, reference, evals = sets
    assert len(pool) == 2000 and len({r["id"] for r in pool}) == 2000
    noise = collections.Counter(r["noise"] for r in pool)
    assert noise == {"wrong": 160, "garbage": 100, "near_duplicate": 200, "duplicate": 60, "clean": 1480}
    sizes = collections.Counter(r["family"] for r in pool if r["noise"] != "garbage")
    assert set(sizes) == set(FAMILIES) and len(FAMILIES) >= 8
    assert max(sizes.values()) >= 0.40 * len(pool) and min(sizes.values()) <= 0.03 * len(pool)
    assert {FAMILIES[f].shape for f in sizes} == {"string", "numeric", "lookup", "multi-step"}
    for name, by_family in (("reference", reference), ("eval", evals)):
        counts = collections.Counter(r["family"] for r in by_family)
        assert counts == {f: 20 if name == "reference" else 40 for f in FAMILIES}, name
        assert {r["noise"] for r in by_family} == {"clean"}
    # noise is spread over the families in proportion to their size: each family's share of the
    # wrong answers is within one record of its share of the pool
    wrong = collections.Counter(r["family"] for r in pool if r["noise"] == "wrong")
    for f, n in sizes.items():
        assert abs(wrong[f] - 160 * n / sum(sizes.values())) <= 1


def test_three_sets_are_disjoint_even_as_paraphrases(sets):
    pool, reference, evals = sets
    keys = [{normalise(r) for r in s} for s in sets]
    assert keys[2].isdisjoint(keys[0]) and keys[2].isdisjoint(keys[1]) and keys[1].isdisjoint(keys[0])
    tasks = [{(r["family"], parse(r)[1]) for r in s if r["family"] != "garbage"} for s in sets]
    assert tasks[2].isdisjoint(tasks[0] | tasks[1]) and tasks[1].isdisjoint(tasks[0])
    assert len({r["id"] for s in sets for r in s}) == sum(len(s) for s in sets)


def test_normalise_ignores_case_and_whitespace():
    a = {"instruction": "Copy:  a\tb ", "output": "a b"}
    assert normalise(a) == normalise({"instruction": "copy: A b", "output": " A  B\n"})
    assert normalise(a) != normalise({"instruction": "Copy: a b", "output": "b a"})


def test_answers_and_difficulties_are_right(sets):
    for r in [r for s in sets for r in s if r["noise"] in ("clean", "near_duplicate", "duplicate")]:
        right, items = solve(r["family"], parse(r)[1])
        assert r["output"] == right, r
        assert len(items) == SIZE[r["family"]][r["difficulty"] - 1], r
        if r["family"] in DISTINCT:  # so that copying an item is never ambiguous
            assert len(set(items)) == len(items), r
        if r["family"] == "add":  # no carry
            assert max(items) <= "8", r
        assert r["shape"] == FAMILIES[r["family"]].shape
    for r in sets[0]:
        if r["noise"] == "wrong":  # well-formed: as many items as the right answer, one differs
            right, _ = solve(r["family"], parse(r)[1])
            got, want = r["output"].split(), right.split()
            if len(want) == 1:  # a number: one digit changed
                got, want = list(r["output"]), list(right)
            assert len(got) == len(want) and sum(a != b for a, b in zip(got, want)) == 1, r
        elif r["noise"] == "garbage":
            assert r["family"] == "garbage" and r["difficulty"] == 0


def test_copies_repeat_a_clean_pool_task(sets):
    pool = sets[0]
    by_id = {r["id"]: r for r in pool}
    sources = collections.Counter()
    for r in pool:
        if r["noise"] not in ("near_duplicate", "duplicate"):
            assert r["dup_of"] is None
            continue
        src = by_id[r["dup_of"]]
        sources[src["id"]] += 1
        assert src["noise"] == "clean" and src["family"] == r["family"] and src["output"] == r["output"]
        if r["noise"] == "duplicate":
            assert {k: v for k, v in r.items() if k not in ("id", "noise", "dup_of")} == \
                {k: v for k, v in src.items() if k not in ("id", "noise", "dup_of")}
        else:  # a paraphrase: the same input in another template
            (k_src, body_src), (k, body) = parse(src), parse(r)
            assert body == body_src and k != k_src and r["difficulty"] == src["difficulty"]
    assert max(sources.values()) == 1  # every copy has its own source
    exact = collections.Counter(normalise(r) for r in pool if r["noise"] != "duplicate")
    assert max(exact.values()) == 1  # the only exact repeats are the marked duplicates


def test_wrong_answers_differ_for_every_family():
    rng = np.random.default_rng(0)
    for name, f in FAMILIES.items():
        for d in (1, 2, 3):
            task = f.draw(d, rng)
            assert wrong_answer(name, task, rng) != f.solve(task)


def test_apportion_is_exact_and_proportional():
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert apportion(7, [0.5, 0.25, 0.25]) == [3, 2, 2]  # 3.5, 1.75, 1.75
    assert sum(apportion(1999, [0.43, 0.13, 0.09, 0.35])) == 1999


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="no clean records"):
        make_sets(100, noise={"wrong": 0.5, "garbage": 0.5})
    with pytest.raises(ValueError, match="unknown noise"):
        make_sets(100, noise={"typo": 0.1})
    with pytest.raises(ValueError, match="unknown skewed family"):
        make_sets(100, families=["copy", "nope"])
