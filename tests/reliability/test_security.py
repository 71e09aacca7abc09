"""Security: what proxysel loads, runs and writes.

- weights come from safetensors (or GGUF, dequantized to safetensors); a folder with only pickle
  weights is refused without --allow-pickle, loaded with ``weights_only`` with it, and a pickle that
  carries code is refused even then (and the code never runs);
- no remote code runs by default: ``trust_remote_code=False`` reaches every ``from_pretrained``;
- YAML is read with ``yaml.safe_load``, nothing is unpickled, ``torch.load`` always has
  ``weights_only=True`` (a scan of src/);
- ids and names from the data or the command line never leave the run folder (also
  test_bad_inputs.test_ids_never_escape_the_run_folder); a symlinked selection folder is refused;
- API keys are read from the environment only and never reach logs, the manifest, the report;
- ``--max-record-bytes`` caps a record (test_bad_inputs.test_string_over_one_megabyte).
"""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import write_qa_pool  # noqa: E402
from harness import count  # noqa: E402
from proxysel.cli.main import main  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src" / "proxysel"


def run_main(args: list, capsys) -> tuple[int, str, str]:
    code = main(["-q", *map(str, args)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return write_qa_pool(tmp_path_factory.mktemp("sec-pool") / "pool.jsonl", 6, seed=8)


def pickle_model(src: Path, dest: Path, state: object) -> Path:
    """``src``'s config and tokenizer, with ``state`` pickled as ``pytorch_model.bin`` (no safetensors)."""
    dest.mkdir()
    for p in src.iterdir():
        if p.suffix != ".safetensors":
            shutil.copy(p, dest / p.name)
    torch.save(state, dest / "pytorch_model.bin")
    return dest


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_weights_need_allow_pickle_and_load_with_weights_only(tmp_path, pool, tiny_model_dir, capsys,
                                                                     monkeypatch):
    from safetensors.torch import load_file

    model = pickle_model(tiny_model_dir, tmp_path / "bin-model",
                         load_file(str(tiny_model_dir / "model.safetensors")))
    code, _, err = run_main(["score", pool, "--model", model, "--out", tmp_path / "r1"], capsys)
    assert code == 2 and "has only pickle weights" in err and "--allow-pickle" in err
    assert not (tmp_path / "r1" / "scores.parquet").exists()

    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    code, _, err = run_main(["score", pool, "--model", model, "--out", tmp_path / "r2", "--allow-pickle"],
                            capsys)
    assert code == 0, err
    assert calls and all(w is True for w in calls)  # every torch.load of the weights: weights_only=True
    code, _, err = run_main(["score", pool, "--model", tiny_model_dir, "--out", tmp_path / "r3"], capsys)
    assert code == 0, err
    import pyarrow.parquet as pq

    a = pq.read_table(tmp_path / "r2" / "scores.parquet").column("loss").to_pylist()
    b = pq.read_table(tmp_path / "r3" / "scores.parquet").column("loss").to_pylist()
    assert a == pytest.approx(b, rel=1e-6, nan_ok=True)
    count("bad_input_cases", 2)


def test_pickle_that_carries_code_is_refused_and_never_runs(tmp_path, pool, tiny_model_dir, capsys):
    marker = tmp_path / "PWNED"
    model = pickle_model(tiny_model_dir, tmp_path / "evil-model", {"weight": _Evil(marker)})
    code, _, err = run_main(["score", pool, "--model", model, "--out", tmp_path / "run", "--allow-pickle"],
                            capsys)
    assert code == 2, err
    assert "refusing the pickle weights" in err and "posix.system" in err and "Traceback" not in err
    assert not marker.exists()
    count("bad_input_cases")


class _Spy:
    """Stands in for a transformers Auto class: records the keyword arguments, then delegates."""

    calls: list[tuple[str, dict]] = []

    def __init__(self, real):
        self.real = real

    def from_pretrained(self, *args, **kwargs):
        _Spy.calls.append((self.real.__name__, kwargs))
        return self.real.from_pretrained(*args, **kwargs)


def test_no_remote_code_unless_asked(tmp_path, pool, tiny_model_dir, capsys, monkeypatch):
    import transformers

    _Spy.calls = []
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", _Spy(transformers.AutoModelForCausalLM))
    monkeypatch.setattr(transformers, "AutoTokenizer", _Spy(transformers.AutoTokenizer))
    common = ["--model", tiny_model_dir, "--max-length", "48"]
    assert run_main(["score", pool, "--out", tmp_path / "s", *common], capsys)[0] == 0
    assert run_main(["train-proxy", pool, "--out", tmp_path / "t", "--epochs", "1", "--checkpoints", "0",
                     "--batch-size", "2", "--grad-accum", "1", *common], capsys)[0] == 0
    seen = {name for name, _ in _Spy.calls}
    assert seen == {"AutoModelForCausalLM", "AutoTokenizer"}
    assert all(kw.get("trust_remote_code") is False for _, kw in _Spy.calls), _Spy.calls
    _Spy.calls = []
    assert run_main(["score", pool, "--out", tmp_path / "s2", "--trust-remote-code", *common], capsys)[0] == 0
    assert _Spy.calls and all(kw.get("trust_remote_code") is True for _, kw in _Spy.calls)

    # the embedder too (a stand-in: the real one needs the bundled MiniLM)
    import sentence_transformers

    from proxysel.signals.embedding import load_embedder

    got = {}

    class FakeST:
        def __init__(self, path, **kwargs):
            got.update(kwargs)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", FakeST)
    load_embedder(str(tiny_model_dir))
    assert got["trust_remote_code"] is False


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name):
            yield node.func.value.id, node.func.attr, node


def _keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value
    return None


#: Reviewed exceptions, by file and call. Each is IPC within one job, never a file or user data.
ALLOWED = {
    # The driver pickles its own Example objects for its own Ray actors (Ray serializes every task
    # argument with pickle anyway); nothing read from disk or from the data is unpickled.
    ("proxysel/backends/ray.py", "pickle.loads"),
}


def test_source_has_no_unsafe_loaders():
    """yaml only through safe_load (or a SafeLoader); no pickle/marshal/dill loads; torch.load only with
    weights_only=True; no hard-coded trust_remote_code=True; no eval/exec of text."""
    problems = []
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 30
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = lambda node: f"{path.relative_to(SRC.parent)}:{node.lineno}"  # noqa: E731
        for module, attr, node in _calls(tree):
            if module == "yaml" and attr in ("load", "load_all", "unsafe_load", "unsafe_load_all",
                                             "full_load", "full_load_all"):
                loader = _keyword(node, "Loader")
                if not (attr in ("load", "load_all") and isinstance(loader, ast.Attribute)
                        and loader.attr in ("SafeLoader", "CSafeLoader")):
                    problems.append(f"{where(node)}: yaml.{attr} without SafeLoader")
            if module in ("pickle", "cPickle", "dill", "marshal", "shelve", "joblib") and \
                    attr in ("load", "loads", "open", "Unpickler") and \
                    (str(path.relative_to(SRC.parent)), f"{module}.{attr}") not in ALLOWED:
                problems.append(f"{where(node)}: {module}.{attr}")
            if module == "torch" and attr == "load":
                w = _keyword(node, "weights_only")
                if not (isinstance(w, ast.Constant) and w.value is True):
                    problems.append(f"{where(node)}: torch.load without weights_only=True")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                w = _keyword(node, "trust_remote_code")
                if isinstance(w, ast.Constant) and w.value is True:
                    problems.append(f"{where(node)}: trust_remote_code=True")
                if isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
                    problems.append(f"{where(node)}: {node.func.id}()")
    assert not problems, "\n".join(problems)


def test_the_scan_finds_what_it_looks_for(tmp_path):
    """The scan above is not vacuous: each pattern it forbids is found in a planted file."""
    bad = ("import yaml, pickle, torch\nyaml.load(t)\nyaml.load(t, Loader=yaml.Loader)\npickle.loads(b)\n"
           "torch.load(p)\ntorch.load(p, weights_only=False)\nf(trust_remote_code=True)\neval('1')\n"
           "yaml.load(t, Loader=yaml.SafeLoader)\ntorch.load(p, weights_only=True)\n")
    tree = ast.parse(bad)
    found = [(m, a) for m, a, _ in _calls(tree)]
    assert (found.count(("yaml", "load")) == 3 and ("pickle", "loads") in found
            and found.count(("torch", "load")) == 3)


PLANTED = {
    "OPENAI_API_KEY": "sk-plantedOPENAIkey4f9a8b7c6d5e",
    "PROXYSEL_JUDGE_API_KEY": "plantedJUDGEkey0c1d2e3f4a5b6",
    "ANTHROPIC_API_KEY": "sk-ant-plantedANTHROPIC9z8y7x",
    "HF_TOKEN": "hf_plantedHFtokenQwErTyUiOp",
}


def test_api_keys_never_reach_logs_manifest_or_report(tmp_path, pool, tiny_model_dir, capsys, monkeypatch):
    for k, v in PLANTED.items():
        monkeypatch.setenv(k, v)
    secret = "sk-plantedCONFIGkey1a2b3c4d5e6f"
    run = tmp_path / "run"
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(f"""\
# judge key for a hosted judge: {secret}
out: {run}
data: {{path: {pool}}}
score: {{signals: [loss], model: {tiny_model_dir}, max_length: 48}}
select: {{name: easy, method: top, signal: loss, order: low, budget: 3}}
""", encoding="utf-8")
    code = main(["-v", "run", str(cfg)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert (run / "report.html").exists() and list((run / "logs").glob("*.log"))
    # a key in a field proxysel does not know: exit 2, the field named, the value not echoed
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg.read_text() + f"judge_api_key: {secret}\n", encoding="utf-8")
    code = main(["-v", "run", str(bad)])
    out2, err2 = capsys.readouterr()
    assert code == 2 and "judge_api_key" in err2
    assert main(["env"]) == 0
    out3, err3 = capsys.readouterr()

    values = [*PLANTED.values(), secret]
    leaks = []
    for p in sorted(run.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            leaks += [f"{p}: {v}" for v in values if v.encode() in data]
    for name, text in (("stdout", out + out2 + out3), ("stderr", err + err2 + err3)):
        leaks += [f"{name}: {v}" for v in values if v in text]
    assert not leaks, leaks
    count("bad_input_cases")


def test_symlinked_selection_folder_is_refused(tmp_path, pool, tiny_model_dir, capsys):
    run = tmp_path / "run"
    assert run_main(["score", pool, "--model", tiny_model_dir, "--out", run, "--max-length", "48"],
                    capsys)[0] == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "selections" / "evil").symlink_to(outside, target_is_directory=True)
    code, _, err = run_main(["select", run, "--method", "top", "--signal", "loss", "--budget", "2",
                             "--name", "evil"], capsys)
    assert code == 2 and "outside the run folder" in err
    assert list(outside.iterdir()) == []
    count("bad_input_cases")
