"""Logs in RUN/logs/ (one file per command invocation), secrets masked, -q/-v on every command."""

from __future__ import annotations

import argparse
import logging

import pytest
from report_run import build_run

from proxysel import logs
from proxysel.cli.main import COMMANDS, build_parser, main
from proxysel.store import Run


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("logs"), n=60)


@pytest.mark.parametrize("text, secret", [
    ("token=abc123def", "abc123def"),
    ("HF_TOKEN: hf_AbCdEfGhIjKlMnOp", "hf_AbCdEfGhIjKlMnOp"),
    ("--api-key=sk-proj-ABCDEFGHIJK", "ABCDEFGHIJK"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJIUzI1NiJ9"),
    ('{"password": "hunter2hunter2"}', "hunter2hunter2"),
    ("ray://user:s3cretpw@head:10001", "s3cretpw"),
])
def test_redact_masks_secrets(text, secret):
    clean = logs.redact(text)
    assert secret not in clean and "***" in clean


def test_control_characters_are_escaped():
    assert logs.redact("id ex1\x1b[31m done\tok\n") == "id ex1\\x1b[31m done\tok\n"


def test_redact_leaves_ordinary_text():
    text = "loss: 40 examples, 3 of 3 shards computed in 0.2s (max_tokens=8192)"
    assert logs.redact(text) == text


def test_a_session_logs_every_opened_run_folder_once(tmp_path):
    log = logging.getLogger("proxysel.test")
    logs.configure(quiet=True)
    with logs.session("unit-test", ["unit-test", "--hf-token=hf_SECRETSECRETSECRET"]):
        log.info("before the run folder was opened")
        for _ in range(2):  # opened twice in one command: one file
            with Run.open(tmp_path / "run"):
                log.info("inside: password=opensesame")
        log.info("after %s", "closing")
    files = list((tmp_path / "run" / "logs").glob("*-unit-test.log"))
    assert len(files) == 1
    text = files[0].read_text()
    for line in ("before the run folder was opened", "inside: password=***", "after closing"):
        assert line in text
    assert "SECRETSECRET" not in text and "opensesame" not in text
    log.info("after the session")  # no handler left behind
    assert "after the session" not in files[0].read_text()


def test_no_session_no_file(tmp_path):
    with Run.open(tmp_path / "run"):
        pass
    assert list((tmp_path / "run" / "logs").iterdir()) == []


def test_every_command_takes_quiet_and_verbose_after_its_name():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(COMMANDS)
    for name, p in sub.choices.items():
        flags = {o for a in p._actions for o in a.option_strings}
        assert {"-q", "--quiet", "-v", "--verbose"} <= flags, name
    args = parser.parse_args(["env", "-q"])
    assert args.quiet and not args.verbose
    args = parser.parse_args(["-q", "env"])  # the global flag is not reset by the subcommand
    assert args.quiet


def test_quiet_report_prints_only_its_result_and_logs_to_the_run(synthetic, capsys):
    assert main(["report", str(synthetic.run), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith("report: ")
    files = sorted((synthetic.run / "logs").glob("*-report.log"))
    assert files and "report: done (exit code 0)" in files[-1].read_text()


def test_verbose_shows_debug_and_info(synthetic, capsys):
    assert main(["-v", "report", str(synthetic.run)]) == 0
    err = capsys.readouterr().err
    assert "DEBUG proxysel.logs: log file" in err and "INFO proxysel.cli: report: done" in err


def test_errors_reach_the_log_file_and_stderr_once(synthetic, capsys):
    assert main(["-q", "report", str(synthetic.run), "--selection", "no-such-selection"]) == 2
    err = capsys.readouterr().err
    assert err.count("no-such-selection") == 1 and err.startswith("proxysel: error:")
    texts = [p.read_text() for p in (synthetic.run / "logs").glob("*-report*.log")]
    assert any("ERROR proxysel.cli: report:" in t and "no-such-selection" in t for t in texts)


def test_read_only_commands_write_no_log(synthetic, capsys):
    before = set((synthetic.run / "logs").iterdir())
    assert main(["-q", "explain", str(synthetic.run), synthetic.ids[0]]) == 0
    assert set((synthetic.run / "logs").iterdir()) == before


def test_quiet_and_verbose_exclude_each_other():
    with pytest.raises(SystemExit) as e:
        main(["-q", "-v", "env"])
    assert e.value.code == 2


def test_progress_without_a_terminal_logs_lines(monkeypatch, caplog):
    from proxysel.progress import Progress

    monkeypatch.setenv("PROXYSEL_PROGRESS_LOG_S", "0.000001")
    monkeypatch.delenv("PROXYSEL_PROGRESS", raising=False)
    with caplog.at_level(logging.INFO, logger="proxysel.progress"):
        with Progress(total=4, desc="score [tiny]") as bar:
            bar.update(1, tokens=100)
            bar.update(1, tokens=100)
    lines = [r.getMessage() for r in caplog.records if r.name == "proxysel.progress"]
    assert lines and lines[-1].startswith("score [tiny]: 2/4 ex (50%)") and "tok/s" in lines[-1]
