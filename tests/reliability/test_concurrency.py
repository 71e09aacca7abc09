"""Two processes on one run folder, through the command line.

A ``proxysel score`` subprocess takes the run folder's lock and is frozen there (SIGSTOP): a second
command on the same folder stops at once with "run folder ... is in use by pid N" and exit code 1,
and writes nothing. Then the first process is SIGKILLed: its lock is stale, and the next command
takes it over and finishes. The unit level (racing takers, reused pids, reboots, other hosts) is in
tests/unit/test_store_lock.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")

from conftest import write_qa_pool  # noqa: E402
from harness import cli_command, cli_env, count, mtimes  # noqa: E402
from proxysel.cli.main import main  # noqa: E402
from proxysel.store import read_lock  # noqa: E402


def test_second_process_is_refused_and_a_killed_owner_is_taken_over(tmp_path, tiny_model_dir, capsys):
    pool = write_qa_pool(tmp_path / "pool.jsonl", 8, seed=1)
    run = tmp_path / "run"
    args = ["score", pool, "--model", tiny_model_dir, "--out", run, "--max-length", "64", "--shard-size", "4"]
    first = subprocess.Popen(cli_command(args), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while read_lock(run) is None or not (run / "manifest.json").exists():
            assert first.poll() is None, first.communicate()[1].decode()
            assert time.monotonic() < deadline, "the first process never took the lock"
            time.sleep(0.002)
        os.killpg(first.pid, signal.SIGSTOP)  # alive, holding the lock
        assert read_lock(run)["pid"] == first.pid
        before = mtimes(run)

        for second in (args, ["select", run, "--method", "random", "--budget", "2"],
                       ["report", run]):
            code = main(["-q", *map(str, second)])
            err = capsys.readouterr().err
            assert code == 1, err
            assert f"run folder {run} is in use by pid {first.pid}" in err
            assert "Wait for it to finish or stop it" in err and "Traceback" not in err
            count("bad_input_cases")
        assert mtimes(run) == before  # the refused commands wrote nothing
        assert read_lock(run)["pid"] == first.pid

        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert read_lock(run)["pid"] == first.pid  # stale: its owner is gone
    assert main(["-q", *map(str, args)]) == 0  # takes the stale lock over and finishes
    assert read_lock(run) is None
    assert pq.read_table(run / "scores.parquet").num_rows == 8
    stage = json.loads((run / "manifest.json").read_text())["stages"]["loss"]
    assert stage["status"] == "complete"
