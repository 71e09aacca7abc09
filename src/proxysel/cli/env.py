"""`proxysel env`: what a bug report needs: versions, threads, device, bundled models found."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import platform
import sys

from proxysel import __version__
from proxysel.models.bundled import BUNDLED, cache_dir, is_available


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print versions, threads, device and the bundled models found")
    p.set_defaults(func=run)


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def env_info() -> dict[str, str]:
    info = {
        "proxysel": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu cores": str(os.cpu_count()),
    }
    for dist in ("torch", "transformers", "accelerate", "safetensors", "gguf", "sentence-transformers",
                 "numpy", "pyarrow", "scikit-learn", "faiss-cpu", "ray"):
        info[dist] = _version(dist)
    try:
        import torch

        info["torch threads"] = str(torch.get_num_threads())
        info["device"] = (f"cuda ({torch.cuda.device_count()} x {torch.cuda.get_device_name(0)})"
                          if torch.cuda.is_available() else "cpu")
        info["bf16 on cpu"] = str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")())
    except ImportError:
        info["device"] = "cpu (torch not installed)"
    for name, b in BUNDLED.items():
        info[f"bundled {name}"] = ("found" if is_available(name) else f"missing: {b.install}")
    info["model cache"] = str(cache_dir())
    return info


def run(args: argparse.Namespace) -> int:
    for k, v in env_info().items():
        print(f"{k + ':':24s} {v}")
    return 0
