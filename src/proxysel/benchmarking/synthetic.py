"""The controlled pool of the ``synthetic`` and ``tiny`` bench presets: known answers, known noise.

Every record is an Alpaca record ``{"id", "instruction", "output"}`` with three extra fields
the bench reads back to compute keep rates: ``family``, ``difficulty`` (1 easy .. 3 hard) and
``noise`` (``clean``, ``wrong``, ``garbage`` or ``duplicate``).

Task families (tokens are single letters or digits, so a from-scratch model can learn them):

| family  | instruction (difficulty 1 / 2 / 3)               | answer                      |
|---------|---------------------------------------------------|-----------------------------|
| copy    | ``Copy: c a f`` with 3 / 5 / 8 letters a-l        | the same letters            |
| reverse | ``Reverse: c a f`` with 3 / 5 / 8 letters         | the letters reversed        |
| sort    | ``Sort: 5 2 9`` with 3 / 5 / 7 digits             | the digits in ascending order |
| add     | ``Add: 23+58`` with 2 / 3 / 4-digit operands      | the decimal sum             |

Noise, injected at exact rates of the pool size (rounded to whole records):
- ``wrong``: a well-formed task of a random family and difficulty with a wrong answer (the
  correct answer's items shuffled until they differ; for ``add`` the sum plus a non-zero
  offset of up to 10%): learnable-looking but harmful;
- ``garbage``: instruction and answer are random printable characters: unlearnable;
- ``duplicate``: exact copies (another id, same instruction and answer) of a handful of clean
  easy records: redundant.

The rest is clean, spread evenly over family x difficulty. The held-out test set is clean,
balanced over family x difficulty, and shares no instruction with the pool. The same
arguments always give the same records.
"""

from __future__ import annotations

import string
from typing import Any, Sequence

import numpy as np

FAMILIES = ("copy", "reverse", "sort", "add")
NOISE_TYPES = ("wrong", "garbage", "duplicate")
LETTERS = "abcdefghijkl"
_LENGTHS = {"copy": (3, 5, 8), "reverse": (3, 5, 8), "sort": (3, 5, 7), "add": (2, 3, 4)}
_PRINTABLE = string.ascii_letters + string.digits + "!#$%&*+-/<=>?@^_~"


def make_task(family: str, difficulty: int, rng: np.random.Generator) -> tuple[str, str]:
    """(instruction, correct answer) of one task; difficulty in 1..3."""
    size = _LENGTHS[family][difficulty - 1]
    if family in ("copy", "reverse"):
        items = [LETTERS[i] for i in rng.integers(0, len(LETTERS), size)]
        answer = items if family == "copy" else items[::-1]
        return f"{family.capitalize()}: {' '.join(items)}", " ".join(answer)
    if family == "sort":
        digits = [str(d) for d in rng.integers(0, 10, size)]
        return f"Sort: {' '.join(digits)}", " ".join(sorted(digits))
    if family == "add":
        lo, hi = 10 ** (size - 1), 10 ** size
        a, b = (int(x) for x in rng.integers(lo, hi, 2))
        return f"Add: {a}+{b}", str(a + b)
    raise ValueError(f"unknown task family {family!r}; choose from {FAMILIES}")


def _wrong_answer(family: str, instruction: str, answer: str, rng: np.random.Generator) -> str:
    if family == "add":
        value = int(answer)
        offset = int(rng.integers(1, max(2, value // 10) + 1)) * (1 if rng.random() < 0.5 else -1)
        return str(max(0, value + offset) if value + offset != value else value + 1)
    items = answer.split(" ")
    if len(set(items)) == 1:  # nothing to shuffle: change one item
        items[0] = next(c for c in (LETTERS if family != "sort" else string.digits) if c != items[0])
        return " ".join(items)
    while True:
        shuffled = [items[i] for i in rng.permutation(len(items))]
        if shuffled != items:
            return " ".join(shuffled)


def garbage_pair(rng: np.random.Generator) -> tuple[str, str]:
    """(instruction, answer) of random printable characters: 8-19 and 6-15 long."""
    def text(lo: int, hi: int) -> str:
        return "".join(_PRINTABLE[i] for i in rng.integers(0, len(_PRINTABLE), int(rng.integers(lo, hi))))

    return text(8, 20), text(6, 16)


def _counts(n: int, rates: dict[str, float]) -> dict[str, int]:
    counts = {k: int(round(rates.get(k, 0.0) * n)) for k in NOISE_TYPES}
    if sum(counts.values()) >= n:
        raise ValueError(f"noise rates {rates} leave no clean records in a pool of {n}")
    return counts


def make_pool(n: int, *, families: Sequence[str] = FAMILIES, difficulties: Sequence[int] = (1, 2, 3),
              noise: dict[str, float] | None = None, seed: int = 0,
              duplicate_sources: int = 20) -> list[dict[str, Any]]:
    """``n`` records: noise at ``noise`` rates (keys of NOISE_TYPES), the rest clean; shuffled.

    duplicate_sources: how many distinct clean easy records the ``duplicate`` copies repeat.
    """
    rng = np.random.default_rng([seed, 1])
    counts = _counts(n, noise or {})
    n_clean = n - sum(counts.values())
    cells = [(f, d) for f in families for d in difficulties]
    records: list[dict[str, Any]] = []
    seen: set[str] = set()

    def fresh(family: str, difficulty: int) -> tuple[str, str]:
        for _ in range(1000):  # unique instructions, so exact duplicates are only the injected ones
            instruction, answer = make_task(family, difficulty, rng)
            if instruction not in seen:
                seen.add(instruction)
                return instruction, answer
        raise ValueError(f"cannot draw enough distinct {family} tasks of difficulty {difficulty}")

    for k in range(n_clean):
        family, difficulty = cells[k % len(cells)]
        instruction, answer = fresh(family, difficulty)
        records.append({"instruction": instruction, "output": answer, "family": family,
                        "difficulty": difficulty, "noise": "clean"})
    for _ in range(counts["wrong"]):
        family, difficulty = cells[int(rng.integers(len(cells)))]
        instruction, answer = fresh(family, difficulty)
        records.append({"instruction": instruction, "output": _wrong_answer(family, instruction, answer, rng),
                        "family": family, "difficulty": difficulty, "noise": "wrong"})
    for _ in range(counts["garbage"]):
        instruction, answer = garbage_pair(rng)
        records.append({"instruction": instruction, "output": answer, "family": "garbage",
                        "difficulty": 0, "noise": "garbage"})
    easy = [r for r in records[:n_clean] if r["difficulty"] == min(difficulties)]
    sources = ([easy[int(i)] for i in rng.choice(len(easy), min(duplicate_sources, len(easy)), replace=False)]
               if counts["duplicate"] else [])
    for k in range(counts["duplicate"]):
        src = sources[k % len(sources)]
        records.append({**src, "noise": "duplicate"})
    order = rng.permutation(len(records))
    return [{"id": f"p{i:05d}", **records[j]} for i, j in enumerate(order)]


def make_test_set(n: int, pool: Sequence[dict[str, Any]], *, families: Sequence[str] = FAMILIES,
                  difficulties: Sequence[int] = (1, 2, 3), seed: int = 0, stream: int = 2,
                  prefix: str = "t") -> list[dict[str, Any]]:
    """``n`` clean records balanced over family x difficulty, none with an instruction of ``pool``.

    stream: the random stream under ``seed`` (2: the held-out set; the bench's reference set is
    stream 3, drawn outside the pool and the held-out set). prefix: of the ids (``t00000``).
    """
    rng = np.random.default_rng([seed, stream])
    taken = {r["instruction"] for r in pool}
    cells = [(f, d) for f in families for d in difficulties]
    out = []
    for k in range(n):
        family, difficulty = cells[k % len(cells)]
        for _ in range(1000):
            instruction, answer = make_task(family, difficulty, rng)
            if instruction not in taken:
                break
        else:
            raise ValueError(f"cannot draw a {family} test task of difficulty {difficulty} outside the pool")
        taken.add(instruction)
        out.append({"id": f"{prefix}{k:05d}", "instruction": instruction, "output": answer, "family": family,
                    "difficulty": difficulty, "noise": "clean"})
    return out
