"""store.lock: one live process per run folder; stale locks of dead processes are taken over safely."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import proxysel.store.lock as lockmod
from proxysel.errors import RunLockedError
from proxysel.store import RunLock, read_lock

SRC = str(Path(lockmod.__file__).resolve().parents[2])
ENV = {**os.environ, "PYTHONPATH": SRC}
LINUX = Path("/proc/self/stat").exists()

# Takes the lock, says so, and holds it until stdin closes (or is killed first).
HOLDER = """
import sys
from proxysel.store.lock import RunLock
lock = RunLock(sys.argv[1])
try:
    lock.acquire()
except Exception as err:
    print("lost", type(err).__name__, flush=True)
else:
    print("won", flush=True)
sys.stdin.read()
if lock.held:
    lock.release()
"""

# Like HOLDER, but waits for a start signal file first so that several start the race together.
RACER = """
import os, sys, time
while not os.path.exists(sys.argv[2]):
    time.sleep(0.005)
""" + HOLDER


def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _finish(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=30)


def _write_lock(run: Path, **fields) -> None:
    info = {"pid": 1, "hostname": socket.gethostname(), "started": "2024-01-01T00:00:00Z", "command": "x",
            "token": "t" * 32, "boot_id": lockmod._boot_id(), "proc_start": None}
    info.update(fields)
    (run / ".lock").write_text(json.dumps(info))


def test_acquire_release_and_content(tmp_path):
    with RunLock(tmp_path) as lock:
        assert lock.held
        info = read_lock(tmp_path)
        assert info["pid"] == os.getpid()
        assert info["hostname"] == socket.gethostname()
        assert info["started"].endswith("Z")
    assert not lock.held
    assert not (tmp_path / ".lock").exists()
    assert read_lock(tmp_path) is None


def test_second_lock_in_same_process_is_refused(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match="in use by this process"):
            RunLock(tmp_path).acquire()


def test_other_live_process_holds_it(tmp_path):
    proc = _spawn(HOLDER, tmp_path)
    try:
        assert proc.stdout.readline().strip() == "won"
        with pytest.raises(RunLockedError) as err:
            RunLock(tmp_path).acquire()
        message = str(err.value)
        assert f"pid {proc.pid}" in message
        assert socket.gethostname() in message
        assert str(tmp_path) in message and "since" in message and "delete" in message
    finally:
        _finish(proc)
    with RunLock(tmp_path):  # released on exit: free again
        pass


def test_lock_of_killed_process_is_taken_over(tmp_path):
    proc = _spawn(HOLDER, tmp_path)
    assert proc.stdout.readline().strip() == "won"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert read_lock(tmp_path)["pid"] == proc.pid  # left behind
    with RunLock(tmp_path):
        assert read_lock(tmp_path)["pid"] == os.getpid()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_racing_takers_of_a_stale_lock_have_one_winner(tmp_path):
    dead = _spawn(HOLDER, tmp_path)
    assert dead.stdout.readline().strip() == "won"
    dead.send_signal(signal.SIGKILL)
    dead.wait(timeout=30)
    go = tmp_path.parent / f"{tmp_path.name}-go"
    racers = [_spawn(RACER, tmp_path, go) for _ in range(4)]
    try:
        time.sleep(1.0)  # let them import and start polling
        go.touch()
        results = [p.stdout.readline().split() for p in racers]
        assert sorted(r[0] for r in results) == ["lost", "lost", "lost", "won"], results
        assert {r[1] for r in results if r[0] == "lost"} == {"RunLockedError"}
        winner = racers[[r[0] for r in results].index("won")]
        assert read_lock(tmp_path)["pid"] == winner.pid
    finally:
        for p in racers:
            _finish(p)
    assert not (tmp_path / ".lock").exists()


def test_lock_on_another_host_is_never_taken_over(tmp_path):
    _write_lock(tmp_path, hostname="some-other-host", pid=12345)
    with pytest.raises(RunLockedError, match="pid 12345 on host some-other-host.*cannot check"):
        RunLock(tmp_path).acquire()
    assert read_lock(tmp_path)["hostname"] == "some-other-host"


def test_lock_with_our_pid_but_not_ours_is_stale(tmp_path):
    """An earlier process had our pid (containers restart with the same pids)."""
    _write_lock(tmp_path, pid=os.getpid())
    with RunLock(tmp_path):
        assert read_lock(tmp_path)["token"] != "t" * 32


@pytest.fixture
def sleeper():
    """A live process (``sleep 30``) for a lock to name; killed and reaped after the test."""
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.skipif(lockmod._boot_id() is None, reason="no boot id on this system")
def test_lock_from_before_a_reboot_is_stale(tmp_path, sleeper):
    _write_lock(tmp_path, pid=sleeper.pid, boot_id="another-boot")
    with RunLock(tmp_path):
        pass


@pytest.mark.skipif(not LINUX, reason="needs /proc")
def test_reused_pid_is_detected_by_start_time(tmp_path, sleeper):
    start = lockmod._proc_start(sleeper.pid)
    _write_lock(tmp_path, pid=sleeper.pid, proc_start=start)
    with pytest.raises(RunLockedError, match=f"pid {sleeper.pid}"):
        RunLock(tmp_path).acquire()
    _write_lock(tmp_path, pid=sleeper.pid, proc_start=start - 1)  # same pid, other process
    with RunLock(tmp_path):
        pass


@pytest.mark.skipif(not LINUX, reason="needs /proc")
def test_zombie_owner_counts_as_dead(tmp_path):
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while lockmod._proc_stat(zombie.pid) and lockmod._proc_stat(zombie.pid)[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        _write_lock(tmp_path, pid=zombie.pid, proc_start=lockmod._proc_start(zombie.pid))
        with RunLock(tmp_path):
            pass
    finally:
        zombie.wait()


def test_old_unreadable_lock_is_taken_over(tmp_path):
    (tmp_path / ".lock").write_text("")
    old = time.time() - 60
    os.utime(tmp_path / ".lock", (old, old))
    with RunLock(tmp_path):
        assert read_lock(tmp_path)["pid"] == os.getpid()


def test_fresh_unreadable_lock_is_waited_for_then_taken_over(tmp_path, monkeypatch):
    """Empty and fresh: its creator may be between O_EXCL and write, so it gets a grace period."""
    monkeypatch.setattr(lockmod, "_UNREADABLE_GRACE_S", 0.3)
    (tmp_path / ".lock").write_text("")
    start = time.monotonic()
    with RunLock(tmp_path):
        assert time.monotonic() - start >= 0.2


def test_unreadable_lock_from_the_future_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(lockmod, "_UNREADABLE_GRACE_S", 0.3)
    (tmp_path / ".lock").write_text("")
    future = time.time() + 3600  # clock skew on a shared filesystem
    os.utime(tmp_path / ".lock", (future, future))
    start = time.monotonic()
    with pytest.raises(RunLockedError, match="being locked by another process"):
        RunLock(tmp_path).acquire()
    assert time.monotonic() - start < 5


def test_release_warns_if_lock_was_replaced(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    _write_lock(tmp_path, pid=99)
    with pytest.warns(RuntimeWarning, match="removed or replaced"):
        lock.release()
    assert read_lock(tmp_path)["pid"] == 99  # someone else's: left alone


def test_slow_taker_never_removes_the_winners_lock(tmp_path):
    """B judged the lock stale, then A took it over first: B's removal must leave A's lock alone."""
    _write_lock(tmp_path, pid=os.getpid())  # stale: our pid, but not a lock this process holds
    stale = (tmp_path / ".lock").read_bytes()
    with RunLock(tmp_path) as winner:  # A
        RunLock(tmp_path)._remove_if_unchanged(stale)  # B, late
        assert read_lock(tmp_path)["token"] == winner._token
