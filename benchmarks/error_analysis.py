"""What a skewed bench's targets get wrong, family by family, and whether the training subset taught it.

Reads the greedy answers a bench keeps for every eval example (`per_example.answer` in each cell's
result.json; cells trained before they were kept have none and are skipped) and the pool's noise
labels. For the families whose answer maps each input item to one output item (add, opposite,
copy, upper, code in order; reverse, rev_upper backwards), every miss is one of:

- `length`: the answer has a different number of items than the reference;
- `substitution`: the same number of items, one or more of them wrong. A wrong item is *taught*
  when a wrong answer in the cell's training subset maps the same input item to the same wrong
  output item (the generator's `wrong` noise changes one item of a correct answer). Beside it,
  the chance level: the share of the family's possible (input, wrong output) pairs that the
  subset teaches, which is what a wrong item drawn at random would match. In brackets, the
  substitution misses where a wrong item repeats the item just before it.

For the single-item families (compare, count, sort_first) every miss is a `value` miss. Per
selector (mean over the seeds given) and family it prints the exact match, the share of eval
examples missed by each kind, and the taught share of the wrong items; then exact match by
instruction template (the first word of the instruction tells the three templates apart) and by
difficulty.

    python benchmarks/error_analysis.py runs/bench-skewed-conf-c runs/bench-skewed-conf-d \
        --selectors full low5-confref-refsqrt --families add opposite
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

#: item-wise families: the output item at position i answers input item i (or item -1-i, reversed)
ALIGNED = {"add": False, "opposite": False, "copy": False, "upper": False, "code": False,
           "reverse": True, "rev_upper": True}


def input_items(instruction: str, n: int) -> list[str]:
    """The last ``n`` items of a skewed instruction (every instruction ends with its input)."""
    return instruction.replace(",", " ").replace("?", " ").split()[-n:] if n else []


def aligned_inputs(instruction: str, n: int, family: str) -> list[str]:
    """The input item that each of an item-wise family's ``n`` output items answers, in output order."""
    inputs = input_items(instruction, n)
    return inputs[::-1] if ALIGNED[family] else inputs


def wrong_items(instruction: str, reference: str, answer: str, family: str) -> list[tuple[str, str]] | None:
    """(input item, answered item) at every position where ``answer`` differs from ``reference``;
    None when the lengths differ (a length miss) or the family is not item-wise."""
    ref, ans = reference.split(), answer.split()
    if family not in ALIGNED or len(ref) != len(ans):
        return None
    return [(x, a) for x, r, a in zip(aligned_inputs(instruction, len(ref), family), ref, ans) if r != a]


def repeats_previous(reference: str, answer: str) -> bool:
    """Whether a wrong item of ``answer`` equals the item just before it (a model that lost its
    place in the input writes the last item again: "cold cold" for "cold new")."""
    ref, ans = reference.split(), answer.split()
    return any(ans[i] == ans[i - 1] and (i >= len(ref) or ref[i] != ans[i]) for i in range(1, len(ans)))


def taught_pairs(pool: dict[str, dict[str, Any]], ids: list[str]) -> dict[str, set[tuple[str, str]]]:
    """Per family, the (input item, output item) pairs that the subset's wrong answers teach: the
    items of a wrong record's output that differ from the family's rule for their input item."""
    from proxysel.benchmarking.skewed import FAMILIES

    taught: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for i in ids:
        r = pool[i]
        f = r["family"]
        if f not in ALIGNED or r["noise"] != "wrong":
            continue
        out = r["output"].split()
        # every item-wise family answers item by item: its rule on one item is the item's answer
        taught[f].update((x, o) for x, o in zip(aligned_inputs(r["instruction"], len(out), f), out)
                         if FAMILIES[f].solve((x,)) != o)
    return dict(taught)


def possible_wrong_pairs(pool: dict[str, dict[str, Any]], family: str) -> int:
    """How many (input item, wrong output item) pairs the family has: its input items seen in the
    pool times its answer items less the correct one (the chance that a random wrong item is taught
    is the taught pairs over this)."""
    from proxysel.benchmarking.skewed import FAMILIES

    out_items = len(set(FAMILIES[family].items))
    inputs = set()
    for r in pool.values():
        if r["family"] == family:
            inputs.update(input_items(r["instruction"], len(r["output"].split())))
    return len(inputs) * (out_items - 1)


def cell_rows(out: Path, pool: dict[str, dict[str, Any]], evals: dict[str, dict[str, Any]],
              selectors: list[str]) -> list[dict[str, Any]]:
    """One row per (cell, eval example) of the bench folder ``out``, for the cells of ``selectors``
    (``full`` included) that kept their answers."""
    from proxysel.store import RunFolder

    folder = RunFolder(out / "proxy")
    possible = {f: possible_wrong_pairs(pool, f) for f in ALIGNED}  # depends on the pool only
    rows = []
    for path in sorted((out / "cells").glob("*/result.json")):
        res = json.loads(path.read_text())
        ex = res.get("per_example") or {}
        if res["selector"] not in selectors or "answer" not in ex:
            continue
        ids = list(pool) if res["selector"] == "full" else folder.selection_ids(res["cell"])
        taught = taught_pairs(pool, ids)
        chance = {f: len(pairs) / possible[f] for f, pairs in taught.items()}
        for eid, ok, ans in zip(ex["id"], ex["exact"], ex["answer"]):
            e = evals[eid]
            f = e["family"]
            kind, n_wrong, n_taught, repeat = "", 0, 0, False
            if not ok:
                pairs = wrong_items(e["instruction"], e["output"], ans, f)
                if f not in ALIGNED:
                    kind = "value"
                elif pairs is None:
                    kind = "length"
                else:
                    kind, n_wrong = "substitution", len(pairs)
                    repeat = repeats_previous(e["output"], ans)
                    n_taught = sum(p in taught.get(f, set()) for p in pairs)
            rows.append({"selector": res["selector"], "seed": res["seed"], "family": f, "ok": int(ok),
                         "kind": kind, "n_wrong": n_wrong, "n_taught": n_taught, "chance": chance.get(f, 0.0),
                         "repeat": repeat,
                         "template": e["instruction"].split()[0], "difficulty": e["difficulty"]})
    return rows


def mean_over_seeds(rows: list[dict[str, Any]], key: Any, value: Any) -> dict[Any, float]:
    """{key: the mean over seeds of the per-seed mean of ``value``} over ``rows``."""
    per: dict[Any, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        per[key(r)][r["seed"]].append(value(r))
    return {k: sum(sum(v) / len(v) for v in s.values()) / len(s) for k, s in per.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("benches", type=Path, nargs="+", help="bench folders (OUT of proxysel bench)")
    ap.add_argument("--selectors", nargs="+", required=True, help="the cells' selectors, e.g. full")
    ap.add_argument("--families", nargs="*", default=None, help="default: every family")
    args = ap.parse_args(argv)

    rows: list[dict[str, Any]] = []
    for out in args.benches:
        pool = {r["id"]: r for r in map(json.loads, (out / "data" / "pool.jsonl").read_text().splitlines())}
        evals = {r["id"]: r for r in map(json.loads, (out / "data" / "eval.jsonl").read_text().splitlines())}
        rows += cell_rows(out, pool, evals, args.selectors)
    if not rows:
        print("no cell of these selectors kept its answers (cells trained before per_example.answer)")
        return 1
    families = args.families or sorted({r["family"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    print(f"seeds {seeds}; per-seed shares of each family's eval examples, then their mean over seeds\n")
    print("| selector | family | exact match | length misses | substitution misses (repeating the item "
          "before) | value misses | wrong items taught by the subset's wrong answers |")
    print("|---|---|---|---|---|---|---|")
    for s in args.selectors:
        for f in families:
            sel = [r for r in rows if r["selector"] == s and r["family"] == f]
            if not sel:
                continue
            m = {k: mean_over_seeds(sel, lambda r: 0, v)[0] for k, v in (
                ("ok", lambda r: r["ok"]), ("length", lambda r: r["kind"] == "length"),
                ("sub", lambda r: r["kind"] == "substitution"), ("repeat", lambda r: r["repeat"]),
                ("value", lambda r: r["kind"] == "value"))}
            n_wrong = sum(r["n_wrong"] for r in sel)
            # chance: the share of the family's possible wrong pairs that the subset teaches
            chance = 100 * mean_over_seeds(sel, lambda r: 0, lambda r: r["chance"])[0]
            taught = (f"{sum(r['n_taught'] for r in sel)} of {n_wrong} (chance {chance:.0f}%)"
                      if n_wrong else "-")
            print(f"| {s} | {f} | {100 * m['ok']:.1f} | {100 * m['length']:.1f} | {100 * m['sub']:.1f} "
                  f"({100 * m['repeat']:.1f}) | {100 * m['value']:.1f} | {taught} |")
    for what, key in (("template (first word)", "template"), ("difficulty", "difficulty")):
        print(f"\nexact match by {what}\n")
        for f in families:
            values = sorted({r[key] for r in rows if r["family"] == f})
            print(f"| {f} | " + " | ".join(str(v) for v in values) + " |")
            print("|---|" + "---|" * len(values))
            for s in args.selectors:
                em = mean_over_seeds([r for r in rows if r["selector"] == s and r["family"] == f],
                                     lambda r: r[key], lambda r: r["ok"])
                cells = [f"{100 * em[v]:.1f}" if v in em else "-" for v in values]
                print(f"| {s} | " + " | ".join(cells) + " |")
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
