"""Seeded kill-and-resume harness: run a proxysel command, SIGKILL it at random points, restart it
until it finishes, and check that nothing was lost, duplicated or left half-written.

    >>> h = KillHarness(["score", str(pool), "--model", str(model), "--out", str(run)], run, seed=3)
    >>> report = h.run_until_done(kills=6)
    >>> assert_same_outputs(run, reference)

Kill points (chosen per attempt by a ``random.Random(seed)``):

- ``marker``: wait until a new durable progress marker appears (a ``shard-*.done`` file, a training
  state folder, a ``COMPLETE`` marker, a selection file), then wait a random 0-``jitter`` s and kill:
  the process is then inside the next shard, a training step, an atomic write or a manifest update;
- ``delay``: kill after a random delay from the start (in the imports, the model load, the lock, ...).

After every kill, and every ``read_every`` seconds while the command runs, the harness checks that
every final file in the run folder parses (a reader never sees half a file; ``.tmp-*`` files are
the writers' private temporaries and may be left behind) and that every ``.done`` marker vouches
for a complete shard (its sha256 matches).

``COUNTS`` collects the figures the suite achieved (kills survived, bad-input cases tried, fuzz
examples run, ...); ``count`` rewrites them to ``$PROXYSEL_RELIABILITY_COUNTS`` (default
``.pytest_cache/proxysel-reliability.json`` at the repository root) after every change, so the file
holds the figures of the latest pytest session, and prints them when the session ends;
docs/reliability.md quotes them. (No conftest.py
here: ``from conftest import ...`` in the other test folders must keep finding tests/conftest.py.)
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

#: Figures the suite achieved in this pytest session.
COUNTS: dict[str, int] = {"kills": 0, "kill_scenarios": 0, "concurrent_reads": 0, "bad_input_cases": 0,
                          "fuzz_examples": 0, "oom_injections": 0}
KILLED_COMMANDS: set[str] = set()
COUNTS_FILE = Path(os.environ.get("PROXYSEL_RELIABILITY_COUNTS",
                                  Path(__file__).resolve().parents[2] / ".pytest_cache"
                                  / "proxysel-reliability.json"))


def count(key: str, n: int = 1) -> None:
    """Add ``n`` to ``COUNTS[key]`` and rewrite the counts file (``pid`` tells which session wrote it:
    two pytest sessions in one checkout write the same default file; set $PROXYSEL_RELIABILITY_COUNTS)."""
    COUNTS[key] += n
    data = {**COUNTS, "commands_killed": sorted(KILLED_COMMANDS), "pid": os.getpid()}
    COUNTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = COUNTS_FILE.with_name(f"{COUNTS_FILE.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, COUNTS_FILE)


@atexit.register
def _print_counts() -> None:
    """This session's figures on the terminal, whoever writes the counts file last."""
    if any(COUNTS.values()):
        print(f"proxysel reliability (pid {os.getpid()}): " + ", ".join(f"{k}={v}" for k, v in COUNTS.items())
              + f"; commands killed: {', '.join(sorted(KILLED_COMMANDS)) or 'none'}", file=sys.stderr)

#: Run-folder files that legitimately differ between two runs: timestamps, pids, timings, paths.
VOLATILE = ("manifest.json", "report.html", "config.yaml", "COMPLETE")
VOLATILE_DIRS = ("logs",)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a proxysel subprocess: one thread (2 shared cores), no bars, offline."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PROXYSEL_QUIET": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0"}
    env.update(extra)
    return env


def cli_command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "proxysel.cli.main", "-q", *map(str, args)]


def cli(args: Sequence[str], *, cwd: str | Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``proxysel ARGS`` in a subprocess and return it finished (text stdout/stderr)."""
    return subprocess.run(cli_command(args), cwd=cwd, env=env or cli_env(), capture_output=True, text=True,
                          timeout=timeout)


# ---------------------------------------------------------------------------------- run folders


def _hidden(rel: Path) -> bool:
    """Temporaries and trash of the writers (``.tmp-*``, ``.trash-*``, ``.lock.stale-*``)."""
    return any(part.startswith((".tmp-", ".trash-", ".lock.stale-")) for part in rel.parts)


def final_files(run: Path) -> list[Path]:
    """Files a reader may look at: everything but writers' temporaries and the lock."""
    out = []
    for p in sorted(run.rglob("*")):
        rel = p.relative_to(run)
        if p.is_file() and not _hidden(rel) and rel.name != ".lock":
            out.append(rel)
    return out


def check_readable(run: Path, *, running: bool = False) -> int:
    """Every final file parses, every ``.done`` marker matches its shard. Returns the files checked.

    running: a writer is at work right now, so a file may vanish between the listing and the read
    (a replaced stage, a rewritten selection); a vanished file is fine, a torn one is not.
    """
    import pyarrow.parquet as pq
    import yaml

    n = 0
    for rel in final_files(run):
        p = run / rel
        name = rel.name
        if running and not p.exists():
            continue
        try:
            if name.endswith(".parquet"):
                pq.read_table(p)
            elif name.endswith((".json", ".done")) or name == "COMPLETE":
                json.loads(p.read_text(encoding="utf-8"))
            elif name.endswith(".jsonl"):
                for line in p.read_bytes().splitlines():
                    json.loads(line)
            elif name.endswith(".yaml"):
                yaml.safe_load(p.read_text(encoding="utf-8"))
            elif name.endswith(".html"):
                assert p.read_text(encoding="utf-8").rstrip().endswith("</html>"), "report.html is cut off"
            elif name.endswith(".safetensors"):
                from safetensors import safe_open

                with safe_open(str(p), framework="numpy") as f:
                    list(f.keys())
        except FileNotFoundError:
            if running:
                continue
            raise
        except Exception as e:  # noqa: BLE001 - any failure is a half-written file
            when = "while the command runs" if running else "after a kill"
            raise AssertionError(f"{p} is visible but not readable {when}: {e!r}") from e
        if name.endswith(".done"):
            try:
                marker = json.loads(p.read_text())
                shard = p.with_suffix(".parquet")
                assert hashlib.sha256(shard.read_bytes()).hexdigest() == marker["sha256"], \
                    f"{shard} != its marker"
                assert pq.read_metadata(shard).num_rows == marker["rows"]
            except FileNotFoundError:
                if not running:
                    raise AssertionError(f"{p} exists but its shard does not") from None
        n += 1
    return n


def progress_markers(run: Path) -> int:
    """Durable progress: shard markers, training states, stage COMPLETE files, selection files."""
    if not run.is_dir():
        return 0
    n = 0
    stages = run / "stages"
    if stages.is_dir():
        for stage in stages.iterdir():
            if not stage.is_dir() or stage.name.startswith("."):
                continue
            n += sum(1 for _ in stage.glob("shard-*.done")) + int((stage / "COMPLETE").exists())
            state = stage / "state"
            if state.is_dir():
                n += sum(1 for p in state.iterdir() if p.name.startswith("step-"))
            n += int((stage / "history.jsonl").exists())
    sels = run / "selections"
    if sels.is_dir():
        n += sum(1 for p in sels.rglob("*") if p.is_file() and not _hidden(p.relative_to(sels)))
    n += int((run / "scores.parquet").exists()) + int((run / "report.html").exists())
    return n


def normalized_manifest(run: Path) -> dict:
    """The parts of the manifest two runs of the same command must agree on."""
    m = json.loads((run / "manifest.json").read_text())
    stages = {}
    for name, s in sorted(m.get("stages", {}).items()):
        stages[name] = {k: s.get(k) for k in ("fingerprint", "status", "examples", "shards", "truncated",
                                              "method", "n_selected", "plan", "lp_epoch") if k in s}
    data = dict(m.get("data") or {})
    return {"stages": stages, "data_fingerprint": data.get("fingerprint"),
            "n_examples": data.get("n_examples"), "skipped_records": m.get("skipped_records"),
            "embeddings": m.get("embeddings")}


def assert_same_outputs(run: Path, reference: Path) -> int:
    """Byte-identical final files (but VOLATILE ones) and an equivalent manifest; returns files compared."""
    def comparable(p: Path) -> bool:
        return p.name not in VOLATILE and p.parts[0] not in VOLATILE_DIRS

    got = [p for p in final_files(run) if comparable(p)]
    want = [p for p in final_files(reference) if comparable(p)]
    assert got == want, f"different files: only here {sorted(set(got) - set(want))}, " \
                        f"only in the reference {sorted(set(want) - set(got))}"
    differ = [str(p) for p in got if (run / p).read_bytes() != (reference / p).read_bytes()]
    assert not differ, f"files differ from the uninterrupted run: {differ}"
    assert normalized_manifest(run) == normalized_manifest(reference)
    return len(got)


def assert_ids_exactly_once(run: Path, ids: Sequence[str]) -> None:
    """scores.parquet holds every pool id once, in pool order; selections name only pool ids, once."""
    import pyarrow.parquet as pq

    got = pq.read_table(run / "scores.parquet", columns=["id"]).column("id").to_pylist()
    assert got == list(ids), "scores.parquet lost, duplicated or reordered ids"
    for sel in sorted((run / "selections").glob("*/selection.parquet")):
        sids = pq.read_table(sel, columns=["id"]).column("id").to_pylist()
        assert sids == list(ids), f"{sel}: ids differ from the pool"
        for f in sel.parent.glob("selected.jsonl"):
            chosen = [json.loads(line)["id"] for line in f.read_bytes().splitlines()]
            assert len(chosen) == len(set(chosen)), f"{f}: duplicated records"
            assert set(chosen) <= set(ids)


def mtimes(run: Path, under: str = "") -> dict[str, int]:
    """rel path -> mtime_ns of the final files (under a subfolder), to show nothing was rewritten.

    Left out: logs, and the stage ``COMPLETE`` markers, which every run of a stage re-stamps (the
    work a stage did is in its shards and its manifest entry).
    """
    return {str(p): (run / p).stat().st_mtime_ns for p in final_files(run)
            if str(p).startswith(under) and p.parts[0] not in VOLATILE_DIRS and p.name != "COMPLETE"}


# ---------------------------------------------------------------------------------- the harness


@dataclass
class Attempt:
    mode: str
    killed: bool
    seconds: float
    markers_before: int
    markers_after: int


@dataclass
class KillHarness:
    """Kill ``proxysel ARGS`` (writing ``run``) at seeded random points until it completes.

    args:      the command line after ``proxysel``.
    run:       the run folder it writes (watched for progress markers, checked after every kill).
    seed:      seeds every choice of kill point.
    jitter:    seconds to wait after a new marker before the kill (uniform in [0, jitter]).
    max_delay: upper bound of the ``delay`` kill points (about one uninterrupted run).
    p_marker:  probability of a ``marker`` kill point (else ``delay``).
    markers:   progress function (default ``progress_markers``).
    restart_finished: a run that finished before its kill point is started again (for commands
               that recompute everything on every run, such as ``select``), until ``kills`` kills.
    read_every: seconds between two checks, while the command runs, that every final file parses.
    """

    args: Sequence[str]
    run: Path
    seed: int
    jitter: float = 0.05
    max_delay: float = 8.0
    min_delay: float = 0.5
    p_marker: float = 0.8
    markers: Callable[[Path], int] = progress_markers
    cwd: Path | None = None
    timeout: float = 240.0
    restart_finished: bool = False
    read_every: float = 0.5
    attempts: list[Attempt] = field(default_factory=list)

    def _attempt(self, rng: random.Random, allow_kill: bool) -> Attempt:
        mode = ("marker" if rng.random() < self.p_marker else "delay") if allow_kill else "finish"
        delay = rng.uniform(self.min_delay, self.max_delay)
        jitter = rng.uniform(0, self.jitter)
        before = self.markers(self.run)
        t0 = time.monotonic()
        proc = subprocess.Popen(cli_command(self.args), cwd=self.cwd, env=cli_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        seen_at = None
        killed = False
        last_read = t0
        try:
            while proc.poll() is None:
                now = time.monotonic()
                if now - last_read >= self.read_every:  # a reader looking while the writer works
                    check_readable(self.run, running=True)
                    count("concurrent_reads")
                    last_read = now = time.monotonic()
                if now - t0 > self.timeout:
                    raise AssertionError(f"proxysel {' '.join(map(str, self.args))} hangs ({self.timeout}s)")
                if mode == "marker" and seen_at is None and self.markers(self.run) > before:
                    seen_at = now
                if (mode == "marker" and seen_at is not None and now - seen_at >= jitter) or \
                        (mode == "delay" and now - t0 >= delay):
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.002)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:  # an assertion above: leave no process behind
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        rc = proc.returncode
        if killed and rc == -signal.SIGKILL:
            pass
        elif rc != 0:
            raise AssertionError(f"proxysel {' '.join(map(str, self.args))} failed (exit {rc}) after "
                                 f"{len(self.attempts)} kills:\n{err.decode(errors='replace')[-3000:]}")
        else:
            killed = False  # it finished before the kill point
        return Attempt(mode, killed, time.monotonic() - t0, before, self.markers(self.run))

    def run_until_done(self, kills: int, max_attempts: int | None = None) -> list[Attempt]:
        """Kill the command ``kills`` times (each time at a new seeded point), then let it finish.

        Asserts after every kill that every final file is readable. Raises if the command completed
        before ``kills`` kills were made (choose a command with enough progress markers).
        """
        rng = random.Random(self.seed)
        max_attempts = max_attempts or 3 * kills + 3
        n_killed = 0
        while True:
            if len(self.attempts) >= max_attempts:
                raise AssertionError(f"{max_attempts} attempts without finishing")
            attempt = self._attempt(rng, allow_kill=n_killed < kills)
            self.attempts.append(attempt)
            if not attempt.killed:
                if self.restart_finished and n_killed < kills:
                    continue
                break
            n_killed += 1
            check_readable(self.run)
        assert n_killed >= kills, (f"the command finished after {n_killed} of {kills} kills; "
                                   f"attempts: {self.attempts}")
        KILLED_COMMANDS.add(str(self.args[0]))
        count("kills", n_killed)
        count("kill_scenarios")
        return self.attempts
