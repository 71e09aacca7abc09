"""Calibrate the ``skewed`` preset's target: does it learn the pool, and can a selection matter?

Generates the pool and eval sets (``benchmarking.skewed``) as the preset does, builds the scratch
target (and its tokenizer, trained on the pool) as ``runner.prepare_models`` does, trains it with
the bench's own loop (``target.train_target``) on each of these subsets, and prints the exact match
per family on the clean, family-balanced eval set (greedy decoding, ``target.evaluate_target``):

- ``full``: the whole pool, noise included;
- ``random-F``: a random share F of the pool (``--random``);
- ``balanced-F``: a share F drawn from the clean records, the same count per family
  (``--balanced``; a family with too few clean records gives its remainder to the others);
- ``sqrt-F``: the same with family quotas proportional to the square root of the family's pool
  size (``--sqrt``): rebalanced, but the large families still lead.

``--candidates SELECTION`` draws the last two from what a selection kept instead of the records
labelled clean (``balanced-filtered-F``, ``sqrt-filtered-F``): the oracle's family quotas with a
proxy's noise filter, which separates what the filter costs from what the quotas cost.
``--swap wrong`` adds, beside each such draw, the same draw with its wrong answers swapped in
place for unused clean records of their families (``...-swapped``): a paired test of what those
records cost, since the rest of the subset and the target's data order stay the same;
``--placebo`` adds a third arm that swaps as many clean records of the same families instead, to
show how far the target moves when that many records change at all.

The last two are sanity checks that a family-aware selection can beat random here. Every subset
is drawn per seed, and the seed also orders the target's data. Defaults: the ``skewed`` preset
(data, target recipe, vocabulary, eval length); the flags override them.

    python benchmarks/calibrate_skewed.py --seeds 0 1 2 --random 0.1 0.3 --balanced 0.1 --sqrt 0.1 0.3 --proxy

``--proxy`` also times ``api.train_proxy`` with the preset's proxy on the pool. CPU seconds are
this process's (``time.process_time``), less sensitive to other load than the wall seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def subset(pool: list[dict[str, Any]], kind: str, share: float, seed: int,
           candidates: set[str] | None = None, *, drop: tuple[str, ...] = (),
           weights: dict[str, float] | None = None, sizes_from: str = "pool") -> list[str]:
    """Ids of ``round(share * len(pool))`` records: ``random`` (any record), or clean records with
    family quotas ``balanced`` (equal) or ``sqrt`` (proportional to sqrt of the family's size).

    ``candidates``: draw the family quotas from these ids (e.g. what a proxy filter kept) instead of
    the records the noise labels call clean; the quotas still come from the family labels.
    ``drop``: noise labels left out of the candidates too (what a filter kept, minus its
    duplicates by the labels). ``weights``: a factor on each family's quota weight (default 1).
    ``sizes_from``: ``sqrt`` of the family's size in the ``pool`` or among the drawable
    ``candidates`` (as ``cluster_random`` with ``from:`` and ``cluster_by: reference`` does)."""
    from proxysel.selectors.base import allocate_capped

    rng = np.random.default_rng([seed, 99])
    k = int(round(share * len(pool)))
    if kind == "random":
        return [pool[int(i)]["id"] for i in np.sort(rng.choice(len(pool), k, replace=False))]
    drawable: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for r in pool:
        if r["family"] == "garbage":
            continue
        sizes[r["family"]] = sizes.get(r["family"], 0) + 1
        if ((r["id"] in candidates) if candidates is not None else r["noise"] == "clean") \
                and r["noise"] not in drop:
            drawable.setdefault(r["family"], []).append(r["id"])
    names = sorted(drawable)
    if sizes_from == "candidates":
        sizes = {f: len(drawable[f]) for f in names}
    factor = np.array([(weights or {}).get(f, 1.0) for f in names])
    base = np.array([1.0 if kind == "balanced" else float(np.sqrt(sizes[f])) for f in names])
    # a family with too few drawable records gives its remainder to the others
    quota = allocate_capped(base * factor, np.array([len(drawable[f]) for f in names]), k)
    return [str(i) for f, q in zip(names, quota) for i in rng.choice(drawable[f], int(q), replace=False)]


def swap_out(pool: list[dict[str, Any]], ids: list[str], labels: tuple[str, ...], seed: int,
             candidates: set[str] | None = None, *, placebo: bool = False) -> list[str]:
    """``ids`` with every record labelled one of ``labels`` replaced, in place, by a clean record of
    its family that ``ids`` does not hold (from ``candidates`` when given), drawn at random.

    The paired arm of a draw: the same records in the same order but for the swapped ones, so the
    target sees the same data order, and the difference between the two arms is those records
    alone (an unpaired ``drop`` draws a different subset). ``placebo``: swap as many *clean*
    records of the same families instead, chosen at random from the draw, and keep the labelled
    ones: how far the target moves when that many records change at all. ValueError when a
    family has too few clean records to swap."""
    rng = np.random.default_rng([seed, 98 if not placebo else 97])  # not subset's stream
    by_id = {r["id"]: r for r in pool}
    taken = set(ids)
    spare: dict[str, list[str]] = {}
    for r in pool:
        if r["noise"] == "clean" and r["id"] not in taken and (candidates is None or r["id"] in candidates):
            spare.setdefault(r["family"], []).append(r["id"])
    marked = [pos for pos, i in enumerate(ids) if by_id[i]["noise"] in labels]
    if placebo:
        clean = {}
        for pos, i in enumerate(ids):
            if by_id[i]["noise"] == "clean":
                clean.setdefault(by_id[i]["family"], []).append(pos)
        stand_ins = []
        for pos in marked:
            family = by_id[ids[pos]]["family"]
            if not clean.get(family):
                raise ValueError(f"no clean {family} record in the draw to swap as a placebo for {ids[pos]}")
            stand_ins.append(clean[family].pop(int(rng.integers(len(clean[family])))))
        marked = stand_ins
    out = list(ids)
    for pos in marked:
        family = by_id[ids[pos]]["family"]
        left = spare.get(family, [])
        if not left:
            raise ValueError(f"no clean {family} record left to swap in for {ids[pos]}")
        out[pos] = left.pop(int(rng.integers(len(left))))
    return out


def arms(pool: list[dict[str, Any]], drawn: list[str], kind: str, seed: int, candidates: set[str] | None,
         args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """The subsets to train for one draw, as (name suffix, ids): the draw itself, and with ``--swap``
    its ``-swapped`` and ``--placebo`` arms (``swap_out``); ``--swapped-only`` leaves the draw out. A
    ``random`` draw has no swapped arms."""
    if not args.swap or kind == "random":
        return [("", drawn)]
    labels = tuple(args.swap)
    out = [] if args.swapped_only else [("", drawn)]
    out.append(("-swapped", swap_out(pool, drawn, labels, seed, candidates)))
    if args.placebo:
        out.append(("-placebo", swap_out(pool, drawn, labels, seed, candidates, placebo=True)))
    return out


def family_weights(items: list[str]) -> dict[str, float]:
    """``["add=0.5", "code=1.5"]`` -> ``{"add": 0.5, "code": 1.5}``; SystemExit on a malformed item."""
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise SystemExit(f"--weights: {item!r} is not FAMILY=NUMBER") from None
        if not name or out[name] < 0:
            raise SystemExit(f"--weights: {item!r} is not FAMILY=NUMBER with a number >= 0")
    return out


def kept_ids(path: Path) -> set[str]:
    """The ids a selection kept (its ``selection.parquet``, or the folder holding it)."""
    import pyarrow.parquet as pq

    path = path / "selection.parquet" if path.is_dir() else path
    table = pq.read_table(path, columns=["id", "selected"]).to_pydict()
    return {i for i, kept in zip(table["id"], table["selected"]) if kept}


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _parser() -> argparse.ArgumentParser:
    from proxysel.benchmarking.presets import preset_dict
    from proxysel.benchmarking.skewed import FAMILIES

    p = preset_dict("skewed")
    d, t, noise = p["data"], p["target"], p["data"]["noise"]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-pool", type=int, default=d["n_pool"])
    ap.add_argument("--eval-per-family", type=int, default=d["n_eval"] // len(FAMILIES))
    for name in ("wrong", "garbage", "near_duplicate", "duplicate"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=float, default=noise[name], help="noise rate")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--vocab-size", type=int, default=p["vocab_size"])
    ap.add_argument("--hidden", type=int, default=t["scratch"]["hidden"])
    ap.add_argument("--layers", type=int, default=t["scratch"]["layers"])
    ap.add_argument("--heads", type=int, default=t["scratch"]["heads"])
    ap.add_argument("--epochs", type=int, default=t["epochs"])
    ap.add_argument("--lr", type=float, default=t["lr"])
    ap.add_argument("--batch-size", type=int, default=t["batch_size"])
    ap.add_argument("--warmup", type=float, default=t["warmup_ratio"])
    ap.add_argument("--max-new-tokens", type=int, default=p["eval"]["max_new_tokens"])
    ap.add_argument("--full", action=argparse.BooleanOptionalAction, default=True,
                    help="train on the whole pool")
    ap.add_argument("--random", type=float, nargs="*", default=[], help="random shares, e.g. 0.1 0.3")
    ap.add_argument("--balanced", type=float, nargs="*", default=[], help="clean shares, equal per family")
    ap.add_argument("--sqrt", type=float, nargs="*", default=[], help="clean shares, sqrt family quotas")
    ap.add_argument("--candidates", default=None, metavar="SELECTION",
                    help="draw --balanced/--sqrt from what this selection kept (a selection.parquet or its "
                         "folder; {seed} is replaced by the seed), not from the records labelled clean: "
                         "the oracle's family quotas with a proxy's noise filter")
    ap.add_argument("--drop", nargs="*", default=[], metavar="LABEL",
                    help="noise labels left out of --balanced/--sqrt's candidates too (e.g. duplicate "
                         "near_duplicate: a filter's kept set minus its duplicates)")
    ap.add_argument("--swap", nargs="*", default=[], metavar="LABEL",
                    help="also train, beside each --balanced/--sqrt draw, the same draw with its records of "
                         "these noise labels swapped for unused clean records of their families (from "
                         "--candidates when given): a paired test of what those records cost")
    ap.add_argument("--placebo", action="store_true",
                    help="with --swap, a third arm: as many clean records of the same families swapped "
                         "instead (the labelled ones stay): how far the target moves when any that many "
                         "records change")
    ap.add_argument("--swapped-only", action="store_true",
                    help="with --swap, leave out the drawn arm of each --balanced/--sqrt draw (it is the "
                         "same as without --swap, so an earlier run's figures for it stand)")
    ap.add_argument("--weights", nargs="*", default=[], metavar="FAMILY=W",
                    help="a factor on a family's quota weight (default 1 for every family)")
    ap.add_argument("--sizes-from", choices=("pool", "candidates"), default="pool",
                    help="sqrt quotas from the family sizes of the pool or of the drawable candidates")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--proxy", action="store_true", help="time api.train_proxy with the preset's proxy")
    ap.add_argument("--detail", action="store_true", help="exact match per family x difficulty, and misses")
    ap.add_argument("--threads", type=int, default=p["threads"])
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for data and models (default: a temp dir)")
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.placebo or args.swapped_only) and not args.swap:
        parser.error("--placebo and --swapped-only need --swap LABEL")
    import torch

    torch.set_num_threads(args.threads)
    from proxysel.benchmarking.config import ModelRecipe
    from proxysel.benchmarking.skewed import make_sets
    from proxysel.benchmarking.target import evaluate_target, train_target
    from proxysel.data import read_pool
    from proxysel.models.scratch import build_llama, build_tokenizer, llama_parameters
    from proxysel.store.scratch import scratch_dir

    work = args.work or scratch_dir("calibrate-skewed-")
    work.mkdir(parents=True, exist_ok=True)
    noise = {k: getattr(args, k) for k in ("wrong", "garbage", "near_duplicate", "duplicate")}
    pool_recs, _, eval_recs = make_sets(args.n_pool, n_eval_per_family=args.eval_per_family, noise=noise,
                                        seed=args.data_seed)
    _write(work / "pool.jsonl", pool_recs)
    _write(work / "eval.jsonl", eval_recs)
    pool, held = read_pool(work / "pool.jsonl"), read_pool(work / "eval.jsonl")
    by_id = {e.id: e for e in pool.examples}
    groups = [r["family"] for r in eval_recs]
    families = sorted(set(groups))

    tok = build_tokenizer([m.content for e in pool.examples for m in e.messages], vocab_size=args.vocab_size)
    longest = max(len(tok(r["output"])["input_ids"]) for r in eval_recs)
    build_llama(tok, work / "target", hidden=args.hidden, layers=args.layers, heads=args.heads, seed=0)
    recipe = ModelRecipe(model=str(work / "target"), epochs=args.epochs, lr=args.lr,
                         batch_size=args.batch_size, grad_accum=1, warmup_ratio=args.warmup, max_length=64)
    print(f"# target: width {args.hidden}, {args.layers} layers, {args.heads} heads, "
          f"{llama_parameters(len(tok), args.hidden, args.layers):,} parameters; vocab {len(tok)}; "
          f"{args.epochs} epochs, lr {args.lr:g}, batch {args.batch_size}, warmup {args.warmup:g}; "
          f"torch threads {args.threads}")
    print(f"# pool {len(pool_recs)}, eval {len(eval_recs)} ({args.eval_per_family}/family); longest eval "
          f"answer {longest} tokens, max_new_tokens {args.max_new_tokens}", flush=True)

    weights = family_weights(args.weights)
    if args.drop or weights or args.sizes_from != "pool":
        print(f"# quotas: drop {args.drop or 'nothing'}, weights {weights or 'none'}, sqrt of the family "
              f"sizes in the {args.sizes_from}", flush=True)
    runs: list[tuple[str, list[str] | None, int]] = []
    for seed in args.seeds:
        runs += [("full", None, seed)] if args.full else []
        within = None
        if args.candidates:
            within = kept_ids(Path(args.candidates.format(seed=seed)))
            unknown = within - set(by_id)
            if unknown:
                raise SystemExit(f"--candidates: {len(unknown)} ids are not in this pool (e.g. "
                                 f"{sorted(unknown)[:3]}); generate the same pool (--n-pool, "
                                 "--data-seed, noise)")
        for kind in ("random", "balanced", "sqrt"):
            tag = "-filtered" if within is not None and kind != "random" else ""
            for f in getattr(args, kind):
                drawn = subset(pool_recs, kind, f, seed, within, drop=tuple(args.drop), weights=weights,
                               sizes_from=args.sizes_from)
                runs += [(f"{kind}{tag}-{f:g}{arm}", ids, seed)
                         for arm, ids in arms(pool_recs, drawn, kind, seed, within, args)]
    rows = []
    for name, ids, seed in runs:
        examples = pool.examples if ids is None else [by_id[i] for i in ids]
        cpu0 = time.process_time()
        trained = train_target(str(work / "target"), recipe, examples, epochs=args.epochs, seed=seed,
                               state_dir=work / "state" / f"{name}-s{seed}")
        cpu = time.process_time() - cpu0
        m, _ = evaluate_target(trained, held.examples, exact_match=True, max_new_tokens=args.max_new_tokens,
                               batch_size=64, batch_tokens=8192, groups=groups)
        per = {f: m["per_group"][f]["exact_match"] for f in families}
        macro = float(np.mean(list(per.values())))
        rows.append((f"{name}-s{seed}", len(examples), trained.steps, trained.seconds, cpu, macro, per))
        print(f"{name}-s{seed}: {len(examples)} examples, {trained.steps} steps, "
              f"train {trained.seconds:.0f}s (CPU {cpu:.0f}s), eval {m['eval_seconds']:.0f}s, "
              f"pooled EM {m['exact_match']:.3f}, macro {macro:.3f}, lowest family {min(per.values()):.3f}",
              flush=True)
        if args.detail:
            _print_detail(trained, held.examples, eval_recs, args.max_new_tokens)

    print("\n| subset | examples | steps | train s (CPU s) | macro EM | " + " | ".join(families) + " |")
    print("|---|---|---|---|---|" + "---|" * len(families))
    for name, n, steps, sec, cpu, macro, per in rows:
        print(f"| {name} | {n} | {steps} | {sec:.0f} ({cpu:.0f}) | {macro:.2f} | "
              + " | ".join(f"{per[f]:.2f}" for f in families) + " |")
    if args.proxy:
        _time_proxy(work, tok)
    return 0


def _print_detail(trained: Any, examples: list[Any], records: list[dict[str, Any]],
                  max_new_tokens: int) -> None:
    from proxysel.benchmarking.target import greedy_answers

    answers = greedy_answers(trained.lm, trained.renderer, examples, max_new_tokens=max_new_tokens,
                             batch_size=64)
    cells: dict[tuple[str, int], list[bool]] = {}
    for a, r in zip(answers, records):
        cells.setdefault((r["family"], r["difficulty"]), []).append(a == r["output"])
    for family in sorted({f for f, _ in cells}):
        em = " ".join(f"d{d} {np.mean(cells[(family, d)]):.2f}" for d in (1, 2, 3) if (family, d) in cells)
        misses = [(r["instruction"], a) for a, r in zip(answers, records)
                  if r["family"] == family and a != r["output"]]
        print(f"  {family}: {em}; e.g. {misses[:2]}")


def _time_proxy(work: Path, tok: Any) -> None:
    from proxysel import api
    from proxysel.benchmarking.presets import preset_dict
    from proxysel.models.scratch import build_llama, llama_parameters

    p = preset_dict("skewed")["proxy"]
    s = p["scratch"]
    build_llama(tok, work / "proxy-model", hidden=s["hidden"], layers=s["layers"], heads=s["heads"], seed=0)
    t0, cpu0 = time.perf_counter(), time.process_time()
    keys = ("epochs", "checkpoints", "lr", "batch_size", "grad_accum", "warmup_ratio", "max_length")
    api.train_proxy(work / "pool.jsonl", out=work / "proxy-run", model=str(work / "proxy-model"),
                    overwrite=True, **{k: p[k] for k in keys})
    print(f"\n# proxy: width {s['hidden']}, {s['layers']} layers, "
          f"{llama_parameters(len(tok), s['hidden'], s['layers']):,} parameters, {p['epochs']} epochs, "
          f"lr {p['lr']:g}, batch {p['batch_size']}, {p['checkpoints']} checkpoints: api.train_proxy "
          f"{time.perf_counter() - t0:.0f}s (CPU {time.process_time() - cpu0:.0f}s)")


if __name__ == "__main__":
    sys.exit(main())
