"""Fuzzing with hypothesis: the readers and the config parser either parse their input correctly or
stop with a clean BadInputError / UsageError (exit code 2 and one line naming the file) - never
another exception, never a traceback, never a record dropped without a word.

The examples are derandomized (the same ones on every run, so CI is reproducible) and counted into
harness.COUNTS["fuzz_examples"]. ``PROXYSEL_FUZZ_EXAMPLES`` scales every test's max_examples (default
below keeps the whole file under ~60 s on 2 cores).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from harness import count  # noqa: E402
from proxysel.cli.main import main  # noqa: E402
from proxysel.config import RunConfig, dump_config, load_config  # noqa: E402
from proxysel.data import read_pool  # noqa: E402
from proxysel.errors import BadInputError, UsageError  # noqa: E402

SCALE = float(os.environ.get("PROXYSEL_FUZZ_EXAMPLES", "1"))


def fuzz(n: int):
    # function_scoped_fixture: capsys is read (and so reset) inside every example
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="proxysel-fuzz-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


FIELDS = ["id", "instruction", "input", "output", "messages", "conversations", "role", "content", "from",
          "value", "prompt", "completion", "response", "text", "type", "tool_calls", "source"]
ROLES = ["user", "assistant", "system", "human", "gpt", "tool", "robot", "User", ""]

texts = st.text(max_size=10) | st.sampled_from(["What is 2+2?", "Four.", " ", "", "\u00a0\n", "a\r\nb",
                                                "\ud800x", "caf\u00e9 \U0001f600"])
ids = (st.text(min_size=1, max_size=8) | st.integers(-5, 10**6)
       | st.sampled_from(["..", "a/b", "", None, 1.5, True]))
scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**63)
           | st.floats(allow_nan=True, allow_infinity=True) | texts | st.sampled_from(ROLES))
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6),
                                                               kids, max_size=5),
    max_leaves=12)


def _turns(role_key: str, text_key: str, roles: list[str]):
    part = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": texts})
    content = texts | st.lists(part, max_size=2) if text_key == "content" else texts
    return st.lists(st.fixed_dictionaries({role_key: st.sampled_from(roles), text_key: content}), max_size=5)


#: Records of every layout, mostly well formed, so that the fuzz reaches past the first check.
layouts = st.one_of(
    st.fixed_dictionaries({"instruction": texts, "output": texts}, optional={"input": texts, "id": ids}),
    st.fixed_dictionaries({"prompt": texts}, optional={"completion": texts | st.none(), "response": texts,
                                                      "id": ids}),
    st.fixed_dictionaries({"text": texts}, optional={"id": ids, "source": texts}),
    st.fixed_dictionaries({"messages": _turns("role", "content", ["user", "assistant", "assistant", "system",
                                                                   "tool", "Assistant"])},
                          optional={"id": ids}),
    st.fixed_dictionaries({"conversations": _turns("from", "value",
                                                   ["human", "gpt", "gpt", "system", "robot"])},
                          optional={"id": ids}),
)


@st.composite
def mutated(draw):
    """A layout record with a few fields set to random JSON values or removed."""
    record = dict(draw(layouts))
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()):
            record[key] = draw(json_values)
        else:
            record.pop(key, None)
    return record


records = st.one_of(layouts, layouts, mutated(), json_values)
conversations = layouts


def check_pool(path: Path, n_lines: int | None = None) -> None:
    """read_pool parses ``path`` or raises a clean BadInputError naming it; under skip every record
    is an example or a listed skip."""
    for mode in ("error", "skip"):
        try:
            pool = read_pool(path, on_bad_record=mode)
        except (BadInputError, UsageError) as e:
            assert e.exit_code == 2 and str(path) in str(e)
            continue
        for e in pool.examples:
            assert isinstance(e.id, str) and e.id and "/" not in e.id and ".." not in e.id
            assert any(m.role in ("assistant", "text") and m.content.strip() for m in e.messages)
        if mode == "skip" and n_lines is not None:
            assert len(pool.examples) + len(pool.skipped) == n_lines, "a record was dropped without a word"
        if mode == "error":
            assert not pool.skipped


def _records_in_jsonl(data: bytes) -> int:
    """Lines the reader must account for: non-blank after the line ending (and a first-line BOM)."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):
        lines[0] = lines[0][3:]
    return sum(1 for ln in lines if not (not ln.rstrip(b"\r") or ln.rstrip(b"\r").isspace()))


@fuzz(250)
@given(data=st.binary(max_size=300) | st.lists(st.sampled_from(
    [b'{"id": "a", "text": "x"}', b'{"text": ""}', b"\xef\xbb\xbf", b"\r\n", b"\n", b"{", b"}", b'"', b"\xff",
     b"\\ud800", b"[", b"]", b",", b' "output": "o"', b'"instruction": "i",']), max_size=30).map(b"".join))
def test_random_bytes(workdir, data):
    count("fuzz_examples")
    path = workdir / "bytes.jsonl"
    path.write_bytes(data)
    check_pool(path, _records_in_jsonl(data))
    jpath = workdir / "bytes.json"
    jpath.write_bytes(data)
    check_pool(jpath)


@fuzz(250)
@given(items=st.lists(records | conversations, max_size=6), ascii_only=st.booleans(),
       indent=st.sampled_from([None, 1]))
def test_random_json_structures(workdir, items, ascii_only, indent):
    count("fuzz_examples")
    lines = [json.dumps(r, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass") for r in items]
    path = workdir / "records.jsonl"
    path.write_bytes(b"".join(ln + b"\n" for ln in lines))
    check_pool(path, len(lines))
    jpath = workdir / "records.json"
    jpath.write_bytes(json.dumps(items, ensure_ascii=ascii_only, indent=indent)
                      .encode("utf-8", "surrogatepass"))
    check_pool(jpath)
    # the same records read from either container: the same examples and the same skips
    try:
        a = read_pool(path, on_bad_record="skip")
    except BadInputError:
        a = None
    try:
        b = read_pool(jpath, on_bad_record="skip")
    except BadInputError:
        b = None
    if a is None or b is None:
        assert a is None and b is None
    else:
        assert [e.id for e in a.examples] == [e.id for e in b.examples]
        where = re.compile(r"\b(byte|line|column) \d+")  # positions differ between the containers
        assert [(s.field, where.sub(r"\1 N", s.reason)) for s in a.skipped] == \
            [(s.field, where.sub(r"\1 N", s.reason)) for s in b.skipped]


@fuzz(60)
@given(items=st.lists(records | conversations, min_size=1, max_size=4))
def test_random_records_through_the_cli(workdir, capsys, items):
    """Through ``proxysel score``: exit code 2 and one line, either for the data or (data fine) for the
    missing model named on purpose; nothing else."""
    count("fuzz_examples")
    path = workdir / "cli.jsonl"
    path.write_bytes(b"".join(json.dumps(r).encode("utf-8", "surrogatepass") + b"\n" for r in items))
    run = workdir / "cli-run"
    shutil.rmtree(run, ignore_errors=True)
    code = main(["-q", "score", str(path), "--model", "./no-such-model", "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("proxysel: error: ") and "Traceback" not in err
    assert str(path) in err or "model folder not found: ./no-such-model" in err


SECTIONS = {
    "data": ["path", "demo", "format", "columns", "limit", "on_bad_record", "dedupe"],
    "runtime": ["device", "shard_size", "trust_remote_code", "allow_pickle"],
    "train_proxy": ["model", "epochs", "checkpoints", "lp_epoch", "lr", "batch_size", "grad_accum", "online",
                    "max_length", "dtype", "template", "seed"],
    "score": ["signals", "model", "judge", "max_length", "dtype", "template", "batch_tokens", "density"],
    "select": ["method", "budget", "seed", "name", "clusters", "signal", "order", "rounding",
               "within_clusters", "stratify", "options"],
    "report": ["enabled", "selection", "read_data"],
}
config_values = (st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=True)
                 | st.text(max_size=8)
                 | st.sampled_from(["pool.jsonl", "lp_app", "s2l", "top", "random", "loss", "0.3", "1e-4",
                                    "cuda:0", "auto", "float32", "bfloat16", "skip", "../x", "low", "alpaca",
                                    "exact"])
                 | st.lists(st.sampled_from(["loss", "embedding", "density", "ifd", "nope"]), max_size=3)
                 | st.dictionaries(st.sampled_from(["instruction", "R", "B", "x"]), st.text(max_size=4),
                                   max_size=2))
BASE = {"out": "runs/fuzz", "data": {"path": "pool.jsonl"}, "score": {"signals": ["loss"]},
        "train_proxy": {"epochs": 1, "checkpoints": 0},
        "select": [{"method": "top", "signal": "loss", "budget": 3}, {"method": "lp_app", "budget": 0.3}],
        "report": {"enabled": True}}


@st.composite
def config_dicts(draw):
    """A valid config with 0-3 random edits: a field set to a random value, a field or section removed,
    an unknown key added."""
    import copy

    cfg = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(0, 3))):
        section = draw(st.sampled_from([*SECTIONS, "out", "bogus"]))
        action = draw(st.sampled_from(["set", "set", "set", "drop", "null"]))
        if section in ("out", "bogus") or action == "null":
            cfg[section] = None if action == "null" else draw(config_values)
            continue
        body = cfg.get(section)
        if isinstance(body, list):
            body = body[draw(st.integers(0, len(body) - 1))] if body else None
        if not isinstance(body, dict):
            body = cfg[section] = {}
        key = draw(st.sampled_from(SECTIONS[section] + ["typo"]))
        if action == "drop":
            body.pop(key, None)
        else:
            body[key] = draw(config_values)
    return cfg


def check_config(path: Path, overrides: list[str] = ()) -> None:
    try:
        cfg = load_config(path, overrides)
    except UsageError as e:  # ConfigError is one
        assert e.exit_code == 2 and str(e)
        return
    assert isinstance(cfg, RunConfig)
    again = path.with_name("again.yaml")
    again.write_text(dump_config(cfg), encoding="utf-8")
    assert load_config(again) == cfg  # a correct parse round-trips


@fuzz(300)
@given(cfg=config_dicts(), overrides=st.lists(
    st.tuples(st.sampled_from(["select.budget", "select.0.seed", "score.signals", "train_proxy.lr",
                               "data.limit", "out", "report.enabled", "bogus.x", "select.lp.budget", "score",
                               "=", ""]),
              st.sampled_from(["0.2", "null", "[loss, embedding]", "abc", "-1", "true", "{", "1e-3", ""])
              ).map("=".join), max_size=2))
def test_random_configs(workdir, cfg, overrides):
    import yaml

    count("fuzz_examples")
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    check_config(path, overrides)


@fuzz(200)
@given(text=st.text(max_size=120) | st.lists(st.sampled_from(
    ["out: x\n", "data: {path: p.jsonl}\n", "score: {signals: [loss]}\n", "select:\n",
     "  - {method: top, budget: 3}\n", "  budget: 0.5\n", "\t", ": ", "- ", "{", "[", "&a ", "*a\n",
     "!!python/object:os.system\n", "%YAML 1.1\n", "---\n", "score: !!binary aGk=\n", "'", "\"\\x00\"\n"]),
    max_size=8).map("".join))
def test_random_yaml_text(workdir, text):
    count("fuzz_examples")
    path = workdir / "text.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    check_config(path)
