"""The compute ledger: what a selection costs, against the target training it is meant to save.

Yin & Rush (2024) show that data selection pays only when selecting costs less than the training
it saves, so the bench reports every selector's cost as a share of the full-data target run.

FLOPs, after Kaplan et al. (2020, section 2.1, "C ~ 6 N" per training token):

    train_flops   = 6 N T     forward 2 N T + backward 4 N T
    train_flops   = 4 N T     with LoRA (``lora=True``): the frozen weights still pass gradients
                              back to the activations (2 N T) but get none themselves; the
                              adapters' own products are left out (r << d)
    forward_flops = 2 N T     a scoring pass

T is the tokens processed: every input token of every sequence (prompt and response), padding
excluded, as ``dynamics.train`` counts them in ``history.jsonl``.

N, the parameters a token is multiplied by, is Kaplan's non-embedding count **plus the output
projection (unembedding)**: every parameter except the lookup tables (``nn.Embedding``: token and
learned position embeddings), with a tied output matrix counted once, as the head it is. Kaplan's
N omits the unembedding because at their scales it is small next to the layers; for the bundled
models it is not: Gemma3-270M's 262k x 640 head is 168M of its 268M parameters and most of its
compute (FIELD-NOTES). So N is 134,515,008 for SmolLM2-135M and 268,098,176 for Gemma3-270M
(both tied: every parameter), where Kaplan's non-embedding N would be 106,203,456 and 100,326,016.
Two simplifications, the same on both sides of the ratio: the attention term that grows with the
context (Kaplan's 2 n_layer n_ctx d_attn per token, ~7% for SmolLM2 at 512 tokens) is left out,
and the head is counted at every token although proxysel computes logits only where a loss is
scored (``engine.batch_token_losses``), so the head's share is an upper bound.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from proxysel.errors import ProxyselError
from proxysel.signals import available_signals, get_signal
from proxysel.store import RunFolder

__all__ = ["compute_stages", "cost_share", "forward_flops", "model_params", "proxy_costs_from_run",
           "selection_cost", "signal_stages", "train_flops"]


def signal_stages(signal: Any, reference: bool = False) -> list[str]:
    """The run stages that compute ``signal`` (a registered class): ``train-proxy`` for its columns;
    for a score signal, those of the signals it requires, its ``prepare_stages``, its own stage and
    ``<name>_reference`` when it embeds the reference set too: always for a signal that needs one
    (rds), and with ``reference`` for one that embeds a reference set only when given one
    (embedding, read by ``cluster_by: reference``)."""
    if signal.command == "train-proxy":
        return ["train-proxy"]
    out = [s for dep in signal.requires for s in signal_stages(get_signal(dep))]
    out += [*signal.prepare_stages, signal.name]
    if signal.reference_vectors and (signal.needs_reference or reference):
        out.append(f"{signal.name}_reference")
    return list(dict.fromkeys(out))


def compute_stages() -> tuple[str, ...]:
    """The run stages that run a model (select:* and report stages cost next to nothing): those of
    every registered signal, reference stages included (``signal_stages``)."""
    return tuple(dict.fromkeys(s for name in available_signals()
                               for s in signal_stages(get_signal(name), reference=True)))


def model_params(model: Any) -> int:
    """N of the ledger: the parameters of ``model`` (a torch module, e.g. a transformers causal LM,
    LoRA-wrapped or not) except its embedding lookup tables, with a tied output head counted once.

    >>> import torch
    >>> m = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 3))
    >>> model_params(m)  # the Linear's 4*3 + 3; the 10x4 table is a lookup
    15
    """
    import torch

    sizes = {id(p): p.numel() for p in model.parameters()}  # shared (tied) parameters appear once
    lookups = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_weight = getattr(head, "weight", None)
    if head_weight is not None:
        lookups.discard(id(head_weight))  # a tied table is also the head's matrix: one product per token
    return int(sum(n for pid, n in sizes.items() if pid not in lookups))


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def train_flops(n_params: int, tokens: int, *, lora: bool = False) -> int:
    """FLOPs of training ``n_params`` (N) on ``tokens`` (T) input tokens: 6 N T, or 4 N T with LoRA.

    >>> train_flops(100, 10), train_flops(100, 10, lora=True)
    (6000, 4000)
    """
    return (4 if lora else 6) * _check_count("n_params", n_params) * _check_count("tokens", tokens)


def forward_flops(n_params: int, tokens: int) -> int:
    """FLOPs of one forward pass of ``n_params`` (N) over ``tokens`` (T) tokens: 2 N T."""
    return 2 * _check_count("n_params", n_params) * _check_count("tokens", tokens)


def cost_share(selection_flops: float, full_target_train_flops: float) -> float:
    """``selection_flops`` as a percentage of the full-data target run's training FLOPs.

    >>> cost_share(3e15, 1.2e17)
    2.5
    """
    if not full_target_train_flops > 0:
        raise ValueError(f"the full-data target run's FLOPs must be > 0, got {full_target_train_flops!r}")
    if selection_flops < 0:
        raise ValueError(f"selection FLOPs must be >= 0, got {selection_flops!r}")
    return 100.0 * selection_flops / full_target_train_flops


# ----------------------------------------------------------------------------- a run's records


def _scored_tokens(run: RunFolder, stage: str, shard_ids: Iterable[int]) -> int:
    """Sum of ``n_tokens`` over the rows not ``truncated`` of the given shards of a stage (the rows a
    scoring pass ran; truncated ones are skipped by ``engine.score_losses``)."""
    total = 0
    for i in shard_ids:
        t = run.read_stage_shard(stage, i, columns=["n_tokens", "truncated"])
        n_tokens = np.asarray(t.column("n_tokens").to_numpy(zero_copy_only=False), dtype=np.int64)
        truncated = np.asarray(t.column("truncated").to_numpy(zero_copy_only=False), dtype=bool)
        total += int(n_tokens[~truncated].sum())
    return total


def _train_proxy_record(run: RunFolder, entry: Mapping[str, Any]) -> dict[str, Any]:
    fp = entry.get("fingerprint") or {}
    history = run.recorded_path(entry.get("history"), "the train-proxy history")
    if not history.is_file():
        raise ProxyselError(f"{history}, the train-proxy history its manifest entry records, is missing; run "
                            f"train-proxy again")
    lines = [ln for ln in history.read_text(encoding="utf-8").splitlines() if ln.strip()]
    train_tokens = sum(int(json.loads(ln)["tokens"]) for ln in lines)
    # Scoring passes: one per pass step (step 0, the checkpoints, the epoch ends; with --online the
    # epoch losses come from the training forward passes and cost nothing more). Each pass runs
    # the same rows, so one record's token count times the number of passes.
    n_parts = math.ceil(int(entry["examples"]) / int(fp["shard_size"]))
    passes = len(entry["plan"]["pass_steps"])
    per_pass = _scored_tokens(run, "train-proxy", range(n_parts))
    missing = []
    if entry.get("resumed_from_step"):
        missing.append(f"seconds of the processes before step {entry['resumed_from_step']}")
    return {"model": fp.get("model"), "kind": "causal_lm", "lora": bool(fp.get("lora", False)),
            "train_tokens": train_tokens,
            "forward_tokens": passes * per_pass, "passes": passes,
            "seconds": entry.get("seconds", entry.get("seconds_total")), "missing": missing}


#: Stages whose shards were written before their markers kept ``forward_tokens``: the passes over
#: each untruncated row's ``n_tokens`` that they ran (color: the prior and the conditional model).
LEGACY_PASSES = {"loss": 1, "color": 2}


def _marker_tokens(run: RunFolder, stage: str, n_shards: int) -> int | None:
    """Sum of ``forward_tokens`` over the shard markers of a stage (``sharded.run_sharded`` keeps the
    tokens each shard's model passes ran); None if any shard was written without it."""
    total = 0
    for i in range(n_shards):
        tokens = run.stage_shard_info(stage, i).get("forward_tokens")
        if tokens is None:
            return None
        total += int(tokens)
    return total


def _signal_record(run: RunFolder, name: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    fp = entry.get("fingerprint") or {}
    missing = []
    if entry.get("shards_timed", entry.get("shards_computed", entry.get("shards"))) != entry.get("shards"):
        missing.append("seconds of the shards computed by an interrupted earlier process")
    forward_tokens: int | None = None
    train_tokens = int(entry.get("train_tokens") or 0)  # color-conditional's fine-tune
    model = fp.get("embedder", fp.get("model"))
    if model is None:  # density (stored vectors), near_dup (the texts): no model pass to count
        missing.append("its arithmetic (no model pass; seconds only)")
    elif "shards" in entry:
        forward_tokens = _marker_tokens(run, name, int(entry["shards"]))
        if forward_tokens is None and name in LEGACY_PASSES:
            forward_tokens = LEGACY_PASSES[name] * _scored_tokens(run, name, range(int(entry["shards"])))
        if forward_tokens is None:
            missing.append("forward_tokens (its shards were written before proxysel kept token counts; "
                           "recompute the stage to count them)")
    elif not train_tokens:
        missing.append("its training tokens (not recorded; seconds only)")
    kind = "embedder" if "embedder" in fp else "causal_lm"
    return {"model": model, "kind": kind, "lora": False,
            "train_tokens": train_tokens, "forward_tokens": forward_tokens,
            "seconds": entry.get("seconds_all", entry.get("seconds")), "missing": missing}


def proxy_costs_from_run(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """What each complete compute stage of a run folder recorded: stage name -> record.

    Record (JSON-able):
      model:          the stage's model spec (``embedder`` for ``embedding``; None for density).
      lora:           whether the training was LoRA.
      kind:           ``causal_lm``, or ``embedder`` for ``embedding`` (how N is counted).
      train_tokens:   input tokens trained on, summed over every optimizer step, including the steps
                      of interrupted earlier processes (train-proxy: ``history.jsonl``;
                      ``color-conditional``: its fine-tune on the reference set); 0 for scoring stages.
      forward_tokens: tokens run through the model in scoring passes: for ``train-proxy`` the
                      passes (``plan.pass_steps``) times the untruncated rows' ``n_tokens``; for a
                      sharded signal stage the sum of its shard markers' ``forward_tokens`` (every
                      pass of its model or models: both of IFD's and of CoLoR's, the judge's
                      prompts of Ask-LLM, the embedder's own tokens); None where they are not
                      known (``density`` runs no model; shards from before markers kept them,
                      except ``loss`` and ``color``, which ``LEGACY_PASSES`` recounts).
      passes:         train-proxy only: its scoring passes over the pool.
      seconds:        wall seconds the manifest records (a sharded stage: summed over the processes
                      that computed its shards, ``seconds_all``; train-proxy: the last process).
      missing:        what the record cannot account for, in words.

    Stages not in ``compute_stages()`` (selections, report) and stages not complete are left out.
    The shards read are checked against their markers: ProxyselError names a damaged one.
    """
    run = RunFolder.at(run_dir)
    out: dict[str, dict[str, Any]] = {}
    stages = compute_stages()
    for name, entry in (run.manifest.get("stages") or {}).items():
        if name not in stages or entry.get("status") != "complete":
            continue
        out[name] = (_train_proxy_record(run, entry) if name == "train-proxy"
                     else _signal_record(run, name, entry))
    return out


def selection_cost(records: Mapping[str, Mapping[str, Any]], n_params: Mapping[str, int]) -> dict[str, Any]:
    """Sum the stage records a selector depends on into one ledger row.

    records:  stage name -> record of ``proxy_costs_from_run`` (only the stages this selector
              reads: e.g. train-proxy and embedding for lp_app, embedding for cluster_random,
              nothing for random).
    n_params: model spec -> N (``model_params``) for the models of those stages.

    Returns {stages, train_tokens, forward_tokens, train_flops, forward_flops, flops, seconds,
    unknown}: FLOPs from the stages whose tokens and N are known; ``unknown`` lists, in words, what
    could not be counted (so a cost is never silently shown as complete). seconds sums the
    recorded wall seconds (None ones count as 0 and are listed in ``unknown``).
    """
    row: dict[str, Any] = {"stages": sorted(records), "train_tokens": 0, "forward_tokens": 0,
                           "train_flops": 0, "forward_flops": 0, "flops": 0, "seconds": 0.0, "unknown": []}
    for name in sorted(records):
        r = records[name]
        row["unknown"] += [f"{name}: {m}" for m in r.get("missing", [])]
        if r.get("seconds") is None:
            row["unknown"].append(f"{name}: seconds not recorded")
        else:
            row["seconds"] += float(r["seconds"])
        train, forward = int(r.get("train_tokens") or 0), r.get("forward_tokens")
        row["train_tokens"] += train
        row["forward_tokens"] += int(forward or 0)
        if not (train or forward):
            continue
        n = n_params.get(r.get("model")) if r.get("model") is not None else None
        if n is None:
            row["unknown"].append(f"{name}: no parameter count for model {r.get('model')!r}")
            continue
        row["train_flops"] += train_flops(n, train, lora=bool(r.get("lora")))
        row["forward_flops"] += forward_flops(n, int(forward or 0))
    row["flops"] = row["train_flops"] + row["forward_flops"]
    row["seconds"] = round(row["seconds"], 3)
    return row
