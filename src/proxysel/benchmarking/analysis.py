"""The bench's numbers from its cells: group metrics, the headline, paired verdicts, the ledger.

Every cell's ``result.json`` keeps its per-example eval arrays (``example_record``): the eval ids,
each example's mean response-token loss (nats; None where the response was truncated away), its
response token count (the weight of a token-weighted loss) and, where answers are exact, 0/1
exact match. Everything below is computed from them with ``benchmarking.stats``:

- ``example_metrics``: per group, pooled and macro (the unweighted mean over groups) of the loss
  (token-weighted) and of exact match;
- ``headline_of``: macro exact match when the bench measures it, else macro eval loss;
- ``comparisons``: for every (selector, budget), selector minus random (same budget) and minus
  full data, paired by seed and eval example, with the stratified bootstrap interval and a
  verdict (``stats.paired_comparison``);
- ``ledger_rows``: what each selector's selection cost (``benchmarking.ledger``), and that cost
  as a share of the full-data target run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from proxysel.benchmarking.ledger import cost_share, selection_cost, signal_stages
from proxysel.benchmarking.stats import group_metric, paired_comparison
from proxysel.signals import producer_of

__all__ = ["FREE_COLUMNS", "ExampleArrays", "Headline", "choice_stages", "comparisons", "example_arrays",
           "example_metrics", "example_record", "headline_of", "ledger_rows", "signal_stages"]


def _num(x: Any) -> float | None:
    """A JSON-able float: None for NaN/inf."""
    return float(x) if x is not None and math.isfinite(float(x)) else None


# ------------------------------------------------------------------------- per-example arrays


@dataclass(frozen=True)
class ExampleArrays:
    """One cell's eval, example by example; row i belongs to ids[i].

    loss: float64 (n,), mean response-token loss in nats, NaN where truncated away.
    tokens: float64 (n,), response tokens scored (the weight of the token-weighted loss).
    exact: float64 (n,) of 0/1, or None when exact match was not measured.
    answers: the greedy answers that exact match compared (n strings), or None when not measured:
        what a failing family actually answered, for error analysis.
    """

    ids: list[str]
    loss: np.ndarray
    tokens: np.ndarray
    exact: np.ndarray | None = None
    answers: list[str] | None = None


def example_record(arrays: ExampleArrays) -> dict[str, Any]:
    """The compact JSON of ``arrays`` kept in result.json (losses to 6 significant digits)."""
    loss = [None if not math.isfinite(v) else float(f"{v:.6g}") for v in arrays.loss.tolist()]
    tokens = [int(t) for t in arrays.tokens.tolist()]
    out: dict[str, Any] = {"id": list(arrays.ids), "loss": loss, "tokens": tokens}
    if arrays.exact is not None:
        out["exact"] = [int(v) for v in arrays.exact.tolist()]
    if arrays.answers is not None:
        out["answer"] = list(arrays.answers)
    return out


def example_arrays(result: Mapping[str, Any]) -> ExampleArrays | None:
    """The arrays of a cell's result dict (None for a result written before they were kept)."""
    rec = result.get("per_example")
    if not rec:
        return None
    loss = np.array([np.nan if v is None else v for v in rec["loss"]], dtype=np.float64)
    exact = np.asarray(rec["exact"], dtype=np.float64) if "exact" in rec else None
    answers = list(rec["answer"]) if "answer" in rec else None  # absent in results written before them
    return ExampleArrays(list(rec["id"]), loss, np.asarray(rec["tokens"], dtype=np.float64), exact, answers)


def example_metrics(arrays: ExampleArrays, groups: Sequence[str]) -> dict[str, Any]:
    """Per-group, pooled and macro metrics of one cell.

    groups: (n,) the eval examples' groups, aligned with ``arrays.ids``. Returns ``eval_loss``
    (pooled, token-weighted), ``eval_loss_macro``, ``eval_loss_example`` (the mean over examples),
    ``eval_examples`` / ``eval_truncated`` (usable / truncated examples), ``exact_match`` and
    ``exact_match_macro`` when measured, and ``per_group``: group -> {n, eval_loss, exact_match}.
    """
    loss = group_metric(arrays.loss, groups, weights=arrays.tokens)
    ok = np.isfinite(arrays.loss)
    out: dict[str, Any] = {"eval_loss": _num(loss.pooled), "eval_loss_macro": _num(loss.macro),
                           "eval_loss_example": _num(arrays.loss[ok].mean()) if ok.any() else None,
                           "eval_examples": int(ok.sum()), "eval_truncated": int((~ok).sum())}
    per: dict[str, dict[str, Any]] = {g: {"n": loss.counts[g] + loss.skipped[g], "eval_loss": _num(m)}
                                      for g, m in loss.means.items()}
    if arrays.exact is not None:
        em = group_metric(arrays.exact, groups)
        out["exact_match"], out["exact_match_macro"] = _num(em.pooled), _num(em.macro)
        for g, m in em.means.items():
            per[g]["exact_match"] = _num(m)
    out["per_group"] = per
    return out


# ---------------------------------------------------------------------------------- headline


@dataclass(frozen=True)
class Headline:
    """The bench's headline: the macro mean of ``metric`` (``exact_match`` or ``eval_loss``)."""

    metric: str

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "exact_match"

    @property
    def macro(self) -> str:
        return f"{self.metric}_macro"

    @property
    def percent(self) -> bool:
        return self.metric == "exact_match"

    @property
    def label(self) -> str:
        return "exact match %" if self.metric == "exact_match" else "held-out loss"


def headline_of(rows: Sequence[Mapping[str, Any]]) -> Headline:
    """Macro exact match when any cell measured exact match, else macro eval loss."""
    has_em = any(r["metrics"].get("exact_match") is not None for r in rows)
    return Headline("exact_match" if has_em else "eval_loss")


# -------------------------------------------------------------------------- paired statistics


def _values(arrays: ExampleArrays, metric: str) -> np.ndarray | None:
    return arrays.loss if metric == "eval_loss" else arrays.exact


def comparisons(rows: Sequence[Mapping[str, Any]], groups: Sequence[str], eval_ids: Sequence[str], *,
                metric: str, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                baselines: Sequence[str] = ("random", "full")) -> list[dict[str, Any]]:
    """Selector minus baseline on the macro ``metric`` for every (selector, budget) and baseline.

    rows: the cells' result dicts. groups: the eval examples' groups, aligned with ``eval_ids``
    (the eval set's order). For each (selector, budget) with a budget: against each of
    ``baselines`` (a selector at the same budget, such as ``random`` or ``longest``, or ``full``),
    not against itself, over the seeds both have. The loss is
    token-weighted (weights: the response token counts, which depend on the example only). A cell
    without per-example arrays, or measured on other eval ids, is left out. Returns one dict per
    comparison: selector, budget, baseline, metric, seeds and ``PairedComparison.to_dict()`` (or
    ``error`` when a comparison cannot be made, e.g. a group with no usable example).
    """
    ids = list(eval_ids)
    cells: dict[tuple[str, float | None, int], ExampleArrays] = {}
    for r in rows:
        a = example_arrays(r)
        if a is not None and a.ids == ids and _values(a, metric) is not None:
            cells[(r["selector"], r["budget"], r["seed"])] = a
    higher = metric == "exact_match"
    pairs = sorted({(s, b) for s, b, _ in cells if b is not None},
                   key=lambda k: (k[1], k[0] != "random", k[0]))
    out = []
    for selector, budget in pairs:
        for baseline in baselines:
            b_budget = None if baseline == "full" else budget
            if selector == baseline:
                continue
            seeds = sorted(s for (x, b, s) in cells
                           if (x, b) == (selector, budget) and (baseline, b_budget, s) in cells)
            if not seeds:
                continue
            sel = np.stack([_values(cells[(selector, budget, s)], metric) for s in seeds])
            base = np.stack([_values(cells[(baseline, b_budget, s)], metric) for s in seeds])
            weights = cells[(selector, budget, seeds[0])].tokens if metric == "eval_loss" else None
            entry: dict[str, Any] = {"selector": selector, "budget": budget, "baseline": baseline,
                                     "metric": metric, "seeds": seeds}
            try:
                entry.update(paired_comparison(sel, base, groups, higher_is_better=higher, weights=weights,
                                               n_boot=n_boot, level=level, seed=seed).to_dict())
            except ValueError as e:
                entry["error"] = str(e)
            out.append(entry)
    return out


# ------------------------------------------------------------------------------------- ledger

#: columns any tokenizer gives (every scoring pass writes them too): reading them costs no model
#: pass, so ``longest`` is not charged for the proxy run that happened to count its tokens
FREE_COLUMNS = ("n_tokens", "n_response_tokens", "truncated")


def choice_stages(choice: Any) -> list[str]:
    """The stages a selection uses, from the columns its selector reads (the signal registry says
    which signal writes or derives each: ``ppl_5`` comes from ``ppl_epoch``); ``FREE_COLUMNS`` and
    columns no signal writes cost nothing."""
    out: list[str] = []
    selector = choice.selector()
    for column in selector.reads():
        signal = None if column in FREE_COLUMNS else producer_of(column)
        if signal is not None:
            out += signal_stages(signal, reference=selector.needs_reference)  # cluster_by: reference
    return list(dict.fromkeys(out))


def ledger_rows(stages: Mapping[str, Sequence[str]], records: Mapping[str, Mapping[str, Any]],
                n_params: Mapping[str, int], full_flops: float | None,
                full_seconds: float | None) -> list[dict[str, Any]]:
    """One ledger row per selector: ``ledger.selection_cost`` of the stages it uses, plus
    ``share_pct`` (its FLOPs as % of the full-data target run's training FLOPs, ``full_flops``) and
    ``seconds_share_pct`` (its seconds as % of that run's training seconds); ``stages`` lists every
    stage it uses, and one the proxy run does not hold is listed in ``unknown``.

    stages: selector name -> stage names (``choice_stages``). records: stage -> the record of
    ``ledger.proxy_costs_from_run``. n_params: model spec -> N.
    """
    out = []
    for name, used in stages.items():
        row = selection_cost({s: records[s] for s in used if s in records}, n_params)
        row["unknown"] += [f"{s}: not in the proxy run" for s in used if s not in records]
        row["share_pct"] = cost_share(row["flops"], full_flops) if full_flops else None
        row["seconds_share_pct"] = 100.0 * row["seconds"] / full_seconds if full_seconds else None
        out.append({"selector": name, **row, "stages": list(used)})
    return out
