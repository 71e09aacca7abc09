"""Options shared by several commands, declared once."""

from __future__ import annotations

import argparse
import json

from proxysel.errors import UsageError


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="a .jsonl, .jsonl.gz, .json, .parquet file, a folder of them, or a HF datasets folder")
    p.add_argument("--format", choices=["alpaca", "sharegpt", "messages", "prompt-completion", "text"],
                   help="record layout (default: detected per record)")
    p.add_argument("--columns", type=_columns, default=None,
                   help='rename fields before detection, as JSON: \'{"instruction": "question", "output": "answer"}\'')
    p.add_argument("--limit", type=int, default=None, help="read only the first N usable records")
    p.add_argument("--on-bad-record", choices=["error", "skip"], default="error",
                   help="error (default): stop with exit code 2 before any work; skip: skip and list in the manifest")
    p.add_argument("--dedupe", action="store_true", help="keep the first of records with the same id")
    p.add_argument("--max-record-bytes", type=int, default=None, metavar="N",
                   help="a record larger than N bytes is a bad record (default 16 MiB): a guard against a "
                        "huge or runaway record")


def add_model_options(p: argparse.ArgumentParser, default_model: str = "smollm2-135m") -> None:
    p.add_argument("--model", default=default_model,
                   help=f"bundled name (smollm2-135m, gemma3-270m), .gguf file, local folder or hub id (default {default_model})")
    p.add_argument("--max-length", type=int, default=512, help="tokens per example; longer ones are cut on the right (default 512)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="weights and compute type (default float32; bfloat16 is ~1.7x faster on CPUs with AVX-512 BF16)")
    p.add_argument("--template", choices=["auto", "chat", "alpaca"], default="auto",
                   help="auto (default): the model's chat template if it has one, else the Alpaca template")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own Python code to run")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow .bin/.pt weights (loaded with weights_only); default: safetensors or GGUF only")


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="the run directory")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute stages whose data, model or parameters changed (default: refuse)")


def add_overrides(p: argparse.ArgumentParser, examples: str, overwrite_help: str) -> None:
    """The trailing ``FIELD=VALUE`` overrides of a config command (``run``, ``bench``) and ``--overwrite``.

    Overrides may also follow options: cli.main hands the words argparse leaves over to ``overrides``.
    """
    p.add_argument("overrides", nargs="*", metavar="FIELD=VALUE",
                   help=f"dotted overrides, typed by their field: {examples}")
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)


def _columns(s: str) -> dict[str, str]:
    try:
        d = json.loads(s)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"--columns must be a JSON object: {e}") from e
    if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in d.items()):
        raise argparse.ArgumentTypeError("--columns must map field names to field names (strings)")
    return d


def positive(name: str, value: int) -> int:
    if value < 1:
        raise UsageError(f"{name} must be >= 1, got {value}")
    return value
