"""One definition per option (issue 15): the config sections drive the flags, the API keywords, the YAML
keys and the checks, and a default is written once."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from proxysel import api
from proxysel.cli.main import build_parser
from proxysel.config import ConfigError, config_from_dict
from proxysel.options import (
    DEFAULT_BATCH_TOKENS,
    DEFAULT_MAX_LENGTH,
    DEFAULT_PROXY,
    ReadConfig,
    RuntimeConfig,
    TrainProxyConfig,
    flag_of,
)
from proxysel.signals.config import ScoreConfig

SRC = Path(__file__).resolve().parents[2] / "src" / "proxysel"


def subparser(name: str):
    parser = build_parser()
    return next(a for a in parser._actions
                if hasattr(a, "choices") and a.choices and name in a.choices).choices[name]


@pytest.mark.parametrize("command, sections, skip", [
    ("train-proxy", (TrainProxyConfig, ReadConfig, RuntimeConfig),
     ("backend", "ray_address", "ray_actors", "ray_cpus_per_actor")),
    ("score", (ScoreConfig, ReadConfig, RuntimeConfig), ()),
])
def test_every_field_is_a_flag_with_its_help_and_default(command, sections, skip):
    p = subparser(command)
    actions = {o: a for a in p._actions for o in a.option_strings}
    for cls in sections:
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if f.name in skip or not f.metadata.get("cli", True) or dataclasses.is_dataclass(default):
                continue  # a nested section's fields are flags of their own (--density-tables)
            action = actions[flag_of(f)]
            assert f.metadata["help"] in action.help
            shown = ",".join(default) if isinstance(default, tuple) else default
            assert action.default == shown, f.name


def test_a_flag_error_names_the_flag_and_a_keyword_error_names_the_keyword(tmp_path):
    from proxysel.cli.main import main

    pool = tmp_path / "p.jsonl"
    pool.write_text('{"instruction": "a", "output": "b"}\n')
    assert main(["-q", "train-proxy", str(pool), "--checkpoints", "1", "--out", str(tmp_path / "r")]) == 2
    with pytest.raises(ConfigError, match="checkpoints must be 0 .* got 1"):
        api.train_proxy(pool, out=tmp_path / "r", checkpoints=1)
    with pytest.raises(ConfigError, match="warmup_ratio must be < 1"):
        api.train_proxy(pool, out=tmp_path / "r", warmup_ratio=1.0)
    with pytest.raises(Exception, match="unexpected keyword argument 'epoch'.*did you mean 'epochs'"):
        api.train_proxy(pool, out=tmp_path / "r", epoch=2)
    assert not (tmp_path / "r").exists()  # refused before any work


def test_the_drift_the_issue_found_is_a_config_error_naming_the_field():
    # passed preflight and wrote config.yaml before, then failed inside the training loop's own copy
    with pytest.raises(ConfigError) as e:
        config_from_dict({"data": {"demo": 5}, "train_proxy": {"checkpoints": 1, "warmup_ratio": 1.0}})
    assert e.value.field in ("train_proxy.checkpoints", "train_proxy.warmup_ratio")


def test_the_training_loop_reads_the_train_proxy_section_itself():
    from proxysel.dynamics.train import TrainConfig

    assert TrainConfig is TrainProxyConfig


#: literals that were written as defaults in many places; each now has one named definition
ONCE = {DEFAULT_PROXY: "DEFAULT_PROXY", DEFAULT_BATCH_TOKENS: "DEFAULT_BATCH_TOKENS",
        DEFAULT_MAX_LENGTH: "DEFAULT_MAX_LENGTH"}


def _defaults(tree: ast.AST):
    """Literal default values: function parameter defaults and the first argument of ``option(...)``."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for d in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                yield d
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "option" and node.args:
            yield node.args[0]


def test_no_default_is_written_twice():
    twice = []
    for path in sorted(SRC.rglob("*.py")):
        for node in _defaults(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and not isinstance(node.value, bool) and node.value in ONCE:
                twice.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r} "
                             f"(use {ONCE[node.value]})")
    assert twice == []
    definitions = [line for line in (SRC / "options.py").read_text().splitlines()
                   if line.startswith(tuple(f"{name} = " for name in ONCE.values()))]
    assert len(definitions) == len(ONCE)
