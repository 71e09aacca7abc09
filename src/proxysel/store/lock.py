"""The run-folder lock: one writing process per run folder at a time.

``RUN/.lock`` is created with ``O_CREAT | O_EXCL`` (exactly one creator wins) and holds JSON with
the owner's pid, hostname, start time and command, plus what is needed to tell a dead owner from a
live one on Linux: the boot id and the process start time (so a reused pid is not mistaken for the
owner).

A lock whose owner is gone (same host, pid no longer alive, machine rebooted, or pid reused) is
*stale* and is taken over. Takeover is safe against several takers at once: a taker opens the
stale lock file, takes an ``flock`` on it, checks that ``RUN/.lock`` is still that very file with
the same content, and only then renames it aside (atomic) and deletes it; afterwards everyone
competes again through ``O_EXCL``. A live lock is never renamed, and a taker that lost the race
finds a different file (or none) and starts over.

A lock held on another host cannot be checked and is always reported as in use.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import RunLockedError
from .atomic import fsync_dir

try:  # POSIX only; without it takeover relies on the inode + content check alone
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
#: An empty or unreadable lock file younger than this is probably being written right now.
_UNREADABLE_GRACE_S = 2.0
_MAX_ATTEMPTS = 50

#: Tokens of the locks this process holds, to tell "this process" from "a dead one with our pid".
_HELD_TOKENS: set[str] = set()


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from field 3 (state) on, or None where unavailable."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may itself contain spaces and parentheses
    return raw[raw.rfind(")") + 2:].split()


def _proc_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks after boot (Linux), or None."""
    fields = _proc_stat(pid)
    try:
        return int(fields[19]) if fields else None  # field 22 of stat
    except (IndexError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (zombies count as dead)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    except OSError:
        return True
    fields = _proc_stat(pid)
    return not (fields and fields[0] == "Z")


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RunLock:
    """Exclusive lock on a run folder, held through ``RUN/.lock``.

    >>> with RunLock("runs/alpaca"):  # doctest: +SKIP
    ...     ...  # only this process writes runs/alpaca here

    Raises RunLockedError on acquire when another live process holds the folder; the message names
    the pid, host, start time and command and says what to do.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._token: str | None = None

    @property
    def held(self) -> bool:
        return self._token is not None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ---- acquire -------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lock, taking over a stale one; raise RunLockedError if a live process holds it."""
        if self.held:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        token = secrets.token_hex(16)
        content = self._content(token)
        deadline = time.monotonic() + _UNREADABLE_GRACE_S + 1.0
        attempts = 0
        while attempts < _MAX_ATTEMPTS:
            if self._create(content):
                self._token = token
                _HELD_TOKENS.add(token)
                return
            raw = self._read()
            if raw is None:  # released or taken over between our create and read: try again
                attempts += 1
                continue
            info = self._parse(raw)
            if info is not None:
                self._raise_if_live(info)
            elif self._young():
                # Empty or torn, and fresh: its creator is probably between O_EXCL and write.
                if time.monotonic() > deadline:
                    raise RunLockedError(
                        f"run folder {self.run_dir} is being locked by another process ({self.path} "
                        f"is there but unreadable); try again, and if it stays so, delete {self.path}.")
                time.sleep(0.05)
                continue
            # stale (dead owner, or unreadable and old): remove it and compete again
            self._remove_if_unchanged(raw)
            attempts += 1
        raise RunLockedError(f"could not lock run folder {self.run_dir}: {self.path} keeps changing "
                             f"(several processes competing for it?); try again.")

    def _content(self, token: str) -> bytes:
        info: dict[str, Any] = {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "started": _now_iso(),
            "command": " ".join(sys.argv)[:500],
            "token": token,
            "boot_id": _boot_id(),
            "proc_start": _proc_start(os.getpid()),
        }
        return (json.dumps(info, sort_keys=True, indent=2) + "\n").encode()

    def _create(self, content: bytes) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, content)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(self.path)
            raise
        os.close(fd)
        fsync_dir(self.run_dir)
        return True

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any] | None:
        try:
            info = json.loads(raw)
            int(info["pid"]), str(info["hostname"])
        except (ValueError, KeyError, TypeError):
            return None
        return info if isinstance(info, dict) else None

    def _young(self) -> bool:
        """Whether the lock file was modified within the last _UNREADABLE_GRACE_S seconds."""
        try:
            return time.time() - self.path.stat().st_mtime < _UNREADABLE_GRACE_S
        except FileNotFoundError:
            return False

    def _raise_if_live(self, info: dict[str, Any]) -> None:
        """Raise RunLockedError unless the owner recorded in ``info`` is certainly gone."""
        pid, host = int(info["pid"]), str(info["hostname"])
        since = info.get("started", "an unknown time")
        command = f" (command: {info['command']})" if info.get("command") else ""
        if host != socket.gethostname():
            raise RunLockedError(
                f"run folder {self.run_dir} is in use by pid {pid} on host {host} since {since}{command}. "
                f"proxysel cannot check a process on another host: wait for it to finish, or, if you "
                f"are sure it is gone, delete {self.path} and run again.")
        if self._owner_alive(info, pid):
            who = "this process" if pid == os.getpid() else f"pid {pid}"
            raise RunLockedError(
                f"run folder {self.run_dir} is in use by {who} on host {host} since {since}{command}. "
                f"Wait for it to finish or stop it (two processes must not write one run folder), "
                f"or use another output folder. If no such process exists, delete {self.path}.")

    @staticmethod
    def _owner_alive(info: dict[str, Any], pid: int) -> bool:
        boot = _boot_id()
        if info.get("boot_id") and boot and info["boot_id"] != boot:
            return False  # the machine restarted since the lock was taken
        if pid == os.getpid():
            return info.get("token") in _HELD_TOKENS  # otherwise an earlier process had our pid
        if not _pid_alive(pid):
            return False
        recorded, current = info.get("proc_start"), _proc_start(pid)
        if recorded is not None and current is not None and int(recorded) != current:
            return False  # the pid now belongs to another process
        return True

    def _remove_if_unchanged(self, stale: bytes) -> None:
        """Remove ``RUN/.lock`` if it is still the file holding ``stale``; else do nothing."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            if fcntl is not None:
                # Serialises takers of this one file; the kernel drops it if a taker dies here.
                fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                now = os.stat(self.path)
            except FileNotFoundError:
                return  # another taker removed it
            if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
                return  # replaced by a fresh lock: re-evaluate from the start
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            if b"".join(chunks) != stale:
                return
            aside = self.run_dir / f"{LOCK_NAME}.stale-{secrets.token_hex(6)}"
            os.rename(self.path, aside)
            os.unlink(aside)
        finally:
            os.close(fd)  # also releases the flock

    # ---- release -------------------------------------------------------------------------------

    def release(self) -> None:
        """Delete the lock file if it is still ours (idempotent)."""
        token, self._token = self._token, None
        if token is None:
            return
        _HELD_TOKENS.discard(token)
        raw = self._read()
        info = self._parse(raw) if raw is not None else None
        if info is None or info.get("token") != token:
            warnings.warn(f"{self.path} was removed or replaced by someone else while this process "
                          f"held it; another process may have written {self.run_dir} meanwhile.",
                          RuntimeWarning, stacklevel=2)
            return
        os.unlink(self.path)


def read_lock(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The content of ``RUN/.lock`` (pid, hostname, started, command, ...), or None if unlocked."""
    lock = RunLock(run_dir)
    raw = lock._read()
    return lock._parse(raw) if raw is not None else None
