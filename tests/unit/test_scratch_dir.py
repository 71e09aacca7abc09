"""store.scratch.scratch_dir: the folder exists while the process runs and is gone after it exits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_folder_and_its_files_are_removed_at_exit():
    code = ("from proxysel.store.scratch import scratch_dir\n"
            "d = scratch_dir('proxysel-test-scratch-')\n"
            "(d / 'sub').mkdir()\n"
            "(d / 'sub' / 'f.txt').write_text('x')\n"
            "assert d.name.startswith('proxysel-test-scratch-') and (d / 'sub' / 'f.txt').is_file()\n"
            "print(d)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip())
    assert path.is_absolute() and path.name.startswith("proxysel-test-scratch-")
    assert not path.exists()


def test_each_call_gives_a_new_folder():
    from proxysel.store.scratch import scratch_dir

    a, b = scratch_dir("proxysel-test-scratch-"), scratch_dir("proxysel-test-scratch-")
    assert a != b and a.is_dir() and b.is_dir()
