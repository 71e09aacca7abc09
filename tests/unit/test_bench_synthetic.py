"""The controlled pool: exact noise counts, known answers, a clean disjoint test set, determinism."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from proxysel.benchmarking.synthetic import FAMILIES, make_pool, make_task, make_test_set


def _answer(instruction: str) -> str:
    kind, _, body = instruction.partition(": ")
    if kind == "Copy":
        return body
    if kind == "Reverse":
        return " ".join(body.split()[::-1])
    if kind == "Sort":
        return " ".join(sorted(body.split()))
    a, b = body.split("+")
    return str(int(a) + int(b))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_tasks_have_the_reference_answer(family, difficulty):
    rng = np.random.default_rng(0)
    for _ in range(20):
        instruction, answer = make_task(family, difficulty, rng)
        assert answer == _answer(instruction)


def test_pool_has_exact_noise_counts_and_labels():
    pool = make_pool(400, noise={"wrong": 0.1, "garbage": 0.05, "duplicate": 0.1}, seed=3)
    counts = collections.Counter(r["noise"] for r in pool)
    assert counts == {"clean": 300, "wrong": 40, "garbage": 20, "duplicate": 40}
    assert len({r["id"] for r in pool}) == 400
    for r in pool:
        if r["noise"] in ("clean", "duplicate"):
            assert r["output"] == _answer(r["instruction"])
        elif r["noise"] == "wrong":
            assert r["output"] != _answer(r["instruction"])
    clean = collections.Counter((r["instruction"], r["output"]) for r in pool if r["noise"] == "clean")
    assert max(clean.values()) == 1  # the only repeats are the injected duplicates
    for r in pool:
        if r["noise"] == "duplicate":
            assert clean[(r["instruction"], r["output"])] == 1 and r["difficulty"] == 1
    per_cell = collections.Counter((r["family"], r["difficulty"]) for r in pool if r["noise"] == "clean")
    assert max(per_cell.values()) - min(per_cell.values()) <= 1  # clean records spread evenly


def test_test_set_is_clean_balanced_and_disjoint():
    pool = make_pool(300, noise={"wrong": 0.1}, seed=1)
    test = make_test_set(120, pool, seed=1)
    assert {r["instruction"] for r in test}.isdisjoint({r["instruction"] for r in pool})
    assert all(r["output"] == _answer(r["instruction"]) and r["noise"] == "clean" for r in test)
    assert set(collections.Counter((r["family"], r["difficulty"]) for r in test).values()) == {10}


def test_same_arguments_same_records():
    a = make_pool(100, noise={"garbage": 0.1}, seed=7)
    assert a == make_pool(100, noise={"garbage": 0.1}, seed=7)
    assert a != make_pool(100, noise={"garbage": 0.1}, seed=8)
    with pytest.raises(ValueError, match="no clean records"):
        make_pool(10, noise={"wrong": 0.5, "garbage": 0.5})
