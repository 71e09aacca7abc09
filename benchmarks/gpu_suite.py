"""The GPU speed suite of issue 17: one run, within one 10-minute device call, tables under --out.

    python3 benchmarks/gpu_suite.py --out DIR [--data FILE]     (on the device: benchmarks/gpu_suite.sh)
    python3 benchmarks/gpu_suite.py --dry-run --out DIR          (here, on CPU: the same steps, tiny)
    python3 benchmarks/gpu_suite.py --write-data FILE [--n 1200] (here: the conversations that travel)

Sections, each written to DIR/gpu_suite.md and DIR/gpu_suite.json as soon as it ends (a run cut
short still returns what it finished):
1. the device, its dense bf16 peak (the spec sheet's for an H100 or H200, 989 TFLOP/s) and a bf16
   matmul measured in this run;
2. scoring, bf16 weights, max length 512, for SmolLM2-135M and Gemma3-270M: the plain HF loop
   (batches of 8 in input order, padded, full-vocabulary logits) against ``engine.score_losses``
   at the CLI's --batch-tokens and at a GPU-sized one; tok/s, x the plain loop, achieved
   TFLOP/s = 2 x parameters x real tokens / s and its share of the peak, and the agreement with
   the plain loop (Spearman, max |diff|);
3. proxy training, bf16 autocast over float32 weights, effective batch 32 = 4 x 8: proxysel's loop
   against the HF Trainer (benchmarks/train_throughput.py), for both models; TFLOP/s counted as
   6 x parameters x real tokens / s;
4. ``proxysel bench --preset tiny`` and ``--preset synthetic`` (seeds=[0]) with device=cuda: wall
   time, target training seconds, and an estimate of the target's training TFLOP/s (6 x target
   parameters x the tokens its cells trained / their training seconds).

--dry-run runs every step on the CPU with a random-init 2-layer model in place of both bundled
models, 8 conversations at max length 64, 2 training steps of 8 and the tiny bench cut to one
seed and budget, so tests/integration/test_gpu_suite.py checks the whole script here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: dense bf16 tensor-core peak of the spec sheets, TFLOP/s (SXM parts; the H200 has the H100's chip)
SPEC_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0}
MODELS = ("smollm2-135m", "gemma3-270m")


@dataclass(frozen=True)
class Sizes:
    device: str
    score_n: int
    max_length: int
    engine_budgets: tuple[int, ...]
    train_steps: int
    train_max_length: int
    effective: int
    micro: int
    bench_overrides: dict[str, list[str]]


GPU = Sizes(device="cuda", score_n=1000, max_length=512, engine_budgets=(8192, 65536), train_steps=6,
            train_max_length=512, effective=32, micro=4,
            bench_overrides={"tiny": ["device=cuda"], "synthetic": ["device=cuda", "seeds=[0]"]})
DRY = Sizes(device="cpu", score_n=8, max_length=128, engine_budgets=(256, 1024), train_steps=2,
            train_max_length=256, effective=8, micro=4,
            bench_overrides={"tiny": ["seeds=[0]", "budgets=[0.3]", "transfer.enabled=false"],
                             "synthetic": ["seeds=[0]", "budgets=[0.3]", "data.n_pool=60", "data.n_eval=12",
                                           "proxy.epochs=1", "target.epochs=1", "proxy.checkpoints=2",
                                           "transfer.enabled=false",
                                           "selectors=[{method: s2l, clusters: 2}]"]})


class Report:
    """Markdown and JSON under ``out``, rewritten after every section."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.md: list[str] = []
        self.data: dict[str, Any] = {}
        out.mkdir(parents=True, exist_ok=True)

    def add(self, key: str, value: Any, md: str) -> None:
        self.data[key] = value
        self.md.append(md)
        (self.out / "gpu_suite.json").write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        (self.out / "gpu_suite.md").write_text("\n\n".join(self.md) + "\n")
        print(md + "\n", flush=True)


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> tuple[Any, float]:
    sync(device)
    t = time.perf_counter()
    v = fn()
    sync(device)
    return v, time.perf_counter() - t


def matmul_tflops(device: str, n: int, reps: int = 10) -> float:
    import torch

    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    for _ in range(3):
        a @ b
    _, t = timed(lambda: [a @ b for _ in range(reps)], device)
    return 2 * n ** 3 * reps / t / 1e12


def device_section(rep: Report, sizes: Sizes) -> float:
    """Returns the peak the shares are taken of (TFLOP/s)."""
    import torch
    import transformers

    name = torch.cuda.get_device_name() if sizes.device == "cuda" else "CPU (dry run)"
    spec = next((v for k, v in SPEC_BF16_TFLOPS.items() if k in name), None)
    measured = matmul_tflops(sizes.device, 8192 if sizes.device == "cuda" else 256)
    peak = spec or measured
    rep.add("device", {"name": name, "spec_bf16_tflops": spec, "matmul_bf16_tflops": measured,
                       "torch": torch.__version__, "transformers": transformers.__version__},
            f"## Device: {name}\n\ntorch {torch.__version__}, transformers {transformers.__version__}. "
            f"Dense bf16 peak: {f'{spec:.0f} TFLOP/s (spec sheet)' if spec else 'not in the spec table'}; "
            f"a bf16 matmul measured in this run: {measured:.3g} TFLOP/s. Shares below are of "
            f"{peak:.3g} TFLOP/s.")
    return peak


def encode(model: str, data: str, n: int, max_length: int) -> tuple[list, Any]:
    """The first ``n`` records of ``data`` that keep a response at ``max_length`` tokens of ``model``,
    and the model's tokenizer."""
    from proxysel.data import read_pool
    from proxysel.models.loader import load_tokenizer, resolve_model_path
    from proxysel.models.render import Renderer

    tok = load_tokenizer(resolve_model_path(model)[0])
    renderer = Renderer(tok, max_length=max_length)
    enc = [e for e in (renderer.encode(x) for x in read_pool(data).examples) if not e.truncated]
    return enc[:n], tok


def scoring_section(rep: Report, sizes: Sizes, models: dict[str, str], data: str, peak: float) -> None:
    import numpy as np

    import score_throughput
    from proxysel.engine import batch_cost_for, plan_batches, score_losses
    from proxysel.models.loader import load_causal_lm

    rows, raw = [], {}
    for label, spec in models.items():
        lm = load_causal_lm(spec, dtype="bfloat16", device=sizes.device)
        model = lm.model
        enc, tok = encode(spec, data, sizes.score_n, sizes.max_length)
        pad = tok.pad_token_id
        tokens = sum(e.n_tokens for e in enc)
        params = sum(p.numel() for p in model.parameters())
        score_losses(model, enc[:16], pad_id=pad)  # warm-up: kernels, allocator
        score_throughput.plain_loop(model, enc[:16], pad, device=sizes.device)
        # The timed lambdas take the model as a default argument, not from the closure: the loop
        # deletes it at its end to free the device memory before the next model loads.
        base, t_base = timed(
            lambda model=model: score_throughput.plain_loop(model, enc, pad, device=sizes.device),
            sizes.device)
        lengths = [e.n_tokens for e in enc]
        plain = sum(len(b) * max(b) for b in (lengths[s:s + 8] for s in range(0, len(lengths), 8)))
        loops = [("plain HF loop, batch 8", base, t_base, plain)]
        for budget in sizes.engine_budgets:
            v, t = timed(lambda model=model: score_losses(model, enc, pad_id=pad, batch_tokens=budget).loss,
                         sizes.device)
            plan = plan_batches(lengths, budget, batch_cost=batch_cost_for(sizes.device))
            padded = sum(len(b) * max(lengths[i] for i in b) for b in plan)
            loops.append((f"engine, --batch-tokens {budget}", v, t, padded))
        for name, v, t, padded in loops:
            tflops = 2 * params * tokens / t / 1e12
            rows.append([label, name, f"{tokens / t:,.0f}", f"{t_base / t:.2f}x", f"{tflops:.3g}",
                         f"{100 * tflops / peak:.1f}%", f"{100 * tokens / padded:.0f}%",
                         f"{score_throughput.spearman(v, base):.4f}", f"{np.max(np.abs(v - base)):.1e}"])
            raw[f"{label}/{name}"] = {"seconds": t, "tokens": tokens, "padded": padded, "params": params}
        del lm, model
        free(sizes.device)
    rep.add("scoring", raw, f"## Scoring, bf16 weights, max length {sizes.max_length}, {sizes.score_n} "
            f"conversations (real tokens: the share of the padded batches that is not padding)\n\n"
            + table(["model", "loop", "tok/s", "x plain", "TFLOP/s", "% of peak", "real tokens",
                     "Spearman vs plain", "max abs diff"], rows))


def training_section(rep: Report, sizes: Sizes, models: dict[str, str], data: str, peak: float) -> None:
    import train_throughput

    train_throughput.EFFECTIVE, train_throughput.MICRO = sizes.effective, sizes.micro
    rows, raw = [], {}
    for label, spec in models.items():
        enc, tok = encode(spec, data, sizes.train_steps * sizes.effective, sizes.train_max_length)
        if len(enc) < sizes.train_steps * sizes.effective:  # the Trainer would train fewer steps
            raise SystemExit(f"{label}: only {len(enc)} records keep a response at {sizes.train_max_length}")
        params = None
        for who in ("proxysel", "Trainer"):
            if who == "proxysel":
                r = train_throughput.run_proxysel(enc, tok.pad_token_id, sizes.train_steps, False, True,
                                                  model_name=spec, device=sizes.device)
            else:
                r = train_throughput.run_trainer(enc, tok, sizes.train_steps, False, True, model_name=spec,
                                                 device=sizes.device)
            free(sizes.device)
            params = params or count_parameters(spec)
            raw[f"{label}/{who}"] = {**r, "params": params}
        ours, theirs = raw[f"{label}/proxysel"], raw[f"{label}/Trainer"]
        for who, r in (("proxysel", ours), ("HF Trainer", theirs)):
            tflops = 6 * params * r["tokens"] / r["seconds"] / 1e12
            ratio = (ours["tokens"] / ours["seconds"]) / (theirs["tokens"] / theirs["seconds"])
            rows.append([label, who, f"{r['tokens'] / r['seconds']:,.0f}",
                         f"{ratio:.2f}x" if who == "proxysel" else "1.00x", f"{tflops:.3g}",
                         f"{100 * tflops / peak:.1f}%"])
    rep.add("training", raw, f"## Proxy training, bf16 autocast, effective batch {sizes.effective} = "
            f"{sizes.micro} x {sizes.effective // sizes.micro}, max length {sizes.train_max_length}, "
            f"{sizes.train_steps - 1} timed steps after 1 warm-up\n\n"
            + table(["model", "loop", "tok/s", "x Trainer", "TFLOP/s", "% of peak"], rows))


def count_parameters(spec: str) -> int:
    """Parameters of ``spec`` (tied weights once), counted on the meta device: nothing is loaded."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from proxysel.models.loader import resolve_model_path

    config = AutoConfig.from_pretrained(str(resolve_model_path(spec)[0]))
    with torch.device("meta"):
        return sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())


def bench_section(rep: Report, sizes: Sizes, peak: float, work: Path, deadline: float) -> None:
    rows, raw = [], {}
    for preset, overrides in sizes.bench_overrides.items():
        left = deadline - time.time()
        if left < 30:
            rows.append([preset, "skipped: no time left", "", "", "", ""])
            continue
        out = work / f"bench-{preset}"
        cmd = [sys.executable, "-m", "proxysel.cli.main", "-q", "bench", "--preset", preset,
               "--out", str(out), *overrides]
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=left)
            ok = proc.returncode == 0
            err = proc.stderr[-2000:]
        except subprocess.TimeoutExpired:
            ok, err = False, f"timed out after {left:.0f} s"
        wall = time.perf_counter() - t
        if not ok:
            rows.append([preset, f"failed ({wall:.0f} s)", "", "", "", ""])
            raw[preset] = {"wall": wall, "error": err}
            print(err, file=sys.stderr)
            continue
        est = target_flops(out)
        tflops = est["flops"] / est["train_seconds"] / 1e12 if est["train_seconds"] else 0.0
        rows.append([preset, f"{wall:.0f}", f"{est['train_seconds']:.1f}", f"{est['params']:,}",
                     f"{tflops:.3g}", f"{100 * tflops / peak:.2f}%"])
        raw[preset] = {"wall": wall, **est}
    rep.add("bench", raw, "## `proxysel bench` presets\n\n" + table(
        ["preset", "wall s", "target training s", "target parameters", "target TFLOP/s (estimate)",
         "% of peak"], rows))


def target_flops(bench: Path) -> dict[str, Any]:
    """6 x target parameters x tokens trained by the bench's cells, and their training seconds."""
    import csv

    from proxysel.data import read_pool
    from proxysel.models.loader import load_causal_lm
    from proxysel.models.render import Renderer

    lm = load_causal_lm(str(bench / "models" / "target"))
    params = sum(p.numel() for p in lm.model.parameters())
    enc = [Renderer(lm.tokenizer, max_length=64).encode(e)
           for e in read_pool(bench / "data" / "pool.jsonl").examples]
    mean_tokens = sum(e.n_tokens for e in enc) / len(enc)
    with open(bench / "results.csv", newline="") as f:
        cells = list(csv.DictReader(f))
    trained = sum(int(c["n_train"]) * int(c["epochs"]) for c in cells)
    seconds = sum(float(c["train_seconds"]) for c in cells)
    return {"params": params, "mean_tokens": mean_tokens, "examples_trained": trained,
            "train_seconds": seconds, "flops": 6 * params * mean_tokens * trained}


def free(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def tiny_model(work: Path) -> str:
    """A random-init 2-layer Llama with a ChatML template, standing in for the bundled models."""
    from proxysel.models.scratch import build_llama, build_tokenizer

    texts = ["The quick brown fox jumps over the lazy dog.", "What is two plus two? Four.",
             "Reverse the word cat: tac.", "Name a colour. Blue is a colour."]
    tok = build_tokenizer(texts, vocab_size=300, split_digits=False)
    return str(build_llama(tok, work / "tiny-model", hidden=32, layers=2, heads=2, seed=0))


def write_data(path: str, n: int) -> None:
    from proxysel.data.sharegpt_demo import sharegpt_pairs

    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in sharegpt_pairs(n))
    print(f"wrote {n} ShareGPT demo conversations to {path}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", help="where the tables go (default $OUT)")
    ap.add_argument("--data", help="a JSONL pool of conversations (default: the ShareGPT demo sample)")
    ap.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny sizes")
    ap.add_argument("--budget", type=float, default=560, help="seconds for the whole suite (default 560)")
    ap.add_argument("--sections", default="scoring,training,bench")
    ap.add_argument("--write-data", metavar="FILE", help="write the demo conversations that travel, and stop")
    ap.add_argument("--n", type=int, default=1200, help="--write-data: conversations (default 1200)")
    args = ap.parse_args()
    if args.write_data:
        write_data(args.write_data, args.n)
        return 0
    deadline = time.time() + args.budget
    out = Path(args.out or os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu-suite-"))
    sizes = DRY if args.dry_run else GPU
    from proxysel.store.scratch import scratch_dir

    work = scratch_dir("gpu-suite-work-")
    data = args.data
    if data is None:
        data = str(work / "pool.jsonl")
        write_data(data, 80 if args.dry_run else 1200)
    if args.dry_run:
        model = tiny_model(work)
        models = {"tiny (for smollm2-135m)": model, "tiny (for gemma3-270m)": model}
    else:
        models = {m: m for m in MODELS}
    rep = Report(out)
    peak = device_section(rep, sizes)
    sections = args.sections.split(",")
    if "scoring" in sections:
        scoring_section(rep, sizes, models, data, peak)
    if "training" in sections:
        training_section(rep, sizes, models, data, peak)
    if "bench" in sections:
        bench_section(rep, sizes, peak, work, deadline)
    print(f"tables in {out}/gpu_suite.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
