"""docs/cli.md is generated from the parser and the run-config classes and must match them."""

from __future__ import annotations

from pathlib import Path

from proxysel.cli.docs import render
from proxysel.cli.main import COMMANDS

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_committed_cli_md_matches_the_parser():
    assert CLI_MD.read_text(encoding="utf-8") == render(), (
        "docs/cli.md is out of date: regenerate it with `python -m proxysel.cli.docs > docs/cli.md`")


def test_every_command_and_config_field_is_documented():
    text = render()
    for name in COMMANDS:
        assert f"## proxysel {name}\n" in text
    for field in ("`select[].budget`", "`train_proxy.model`", "`score.signals`", "`data.demo`"):
        assert field in text


def test_signals_md_applicability_table_matches_the_registry():
    from proxysel.cli.docs import applicability_table

    text = (CLI_MD.parent / "signals.md").read_text(encoding="utf-8")
    start = text.index("-->\n", text.index("<!-- applicability")) + 4
    assert text[start:text.index("<!-- end applicability -->")] == applicability_table(), (
        "docs/signals.md's applicability table is out of date: paste proxysel.cli.docs.applicability_table()")
