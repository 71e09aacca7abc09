"""Every signal on every layout, through every command: it computes (finite where it applies), or it
refuses before any work with exit code 2 and says what to run instead (issue 16).

The matrix is read from the registries (``available_signals``) and the layouts (``FORMATS``, with
``formats.example_record``): a new signal or layout joins it with no edit here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from proxysel.cli.main import main
from proxysel.data.example import FORMATS
from proxysel.data.formats import example_parts, example_record
from proxysel.signals import available_signals, get_signal
from proxysel.store import RunFolder

pytestmark = pytest.mark.slow  # 55 cells x 3 commands on a tiny model: minutes

CASES = [(s, f) for s in available_signals() for f in FORMATS]


def write(path: Path, fmt: str, start: int, n: int) -> Path:
    path.write_text("".join(json.dumps(example_record(fmt, i)) + "\n" for i in range(start, start + n)))
    return path


def run_cli(args: list, capsys) -> tuple[int, str]:
    code = main(["-q", *map(str, args)])
    return code, capsys.readouterr().err


def assert_finite(run: Path, signal: str) -> None:
    """Every declared column of ``signal`` is finite where it applies (NaN only with a reason)."""
    folder = RunFolder(run)
    cls = get_signal(signal)
    if cls.vectors:
        _, vecs = folder.read_vectors(signal)
        assert np.isfinite(vecs).all()
        return
    scores = folder.read_scores()
    na = scores.column(f"{signal}_na").to_pylist() if f"{signal}_na" in scores.column_names else None
    for column in cls.columns:
        col = scores.column(column)
        if not (pa.types.is_floating(col.type) or pa.types.is_list(col.type)):
            continue
        for k, v in enumerate(col.to_pylist()):
            if na and na[k]:
                continue
            flat = np.asarray(v if isinstance(v, list) else [v], dtype=float)
            assert np.isfinite(flat).all(), (signal, column, k, v)


@pytest.mark.parametrize("signal,fmt", CASES, ids=[f"{s}-{f}" for s, f in CASES])
def test_signal_on_layout(signal, fmt, tmp_path, tiny_model_dir, capsys):
    cls = get_signal(signal)
    pool = write(tmp_path / "pool.jsonl", fmt, 0, 4)
    ref = write(tmp_path / "ref.jsonl", fmt, 10, 3)
    fits = all(p in example_parts(fmt) for p in cls.needs)
    model = ["--model", tiny_model_dir, "--max-length", "64"]
    signals = ",".join((*cls.requires, signal))
    reference = ["--reference", ref] if cls.needs_reference else []

    # 1. its own command
    out = tmp_path / "own"
    if cls.command == "score":
        code, err = run_cli(["score", pool, "--signals", signals, *reference, *model,
                             "--judge", tiny_model_dir, "--out", out], capsys)
    else:
        code, err = run_cli(["train-proxy", pool, *model, "--epochs", "2", "--checkpoints", "2",
                             "--batch-size", "2", "--grad-accum", "1", "--out", out], capsys)
    if fits:
        assert code == 0, err
        assert_finite(out, signal)
    else:
        assert code == 2 and f"--signals {signal} needs" in err and f"{fmt} record has no" in err, err
        assert not out.exists()  # refused before anything was written

    # 2. the other command: score refuses a train-proxy signal, naming train-proxy; a selection on a run
    # without the signal names the command that makes it
    if cls.command == "train-proxy":
        code, err = run_cli(["score", pool, "--signals", signal, *model, "--out", tmp_path / "other"], capsys)
        assert code == 2 and "computed by train-proxy" in err and "proxysel train-proxy" in err, err
    else:
        bare = tmp_path / "bare"
        code, err = run_cli(["train-proxy", pool, *model, "--epochs", "1", "--checkpoints", "0",
                             "--out", bare], capsys)
        assert code == 0, err
        code, err = run_cli(["select", bare, "--method", "top", "--signal", cls.columns[0], "--budget", "1"],
                            capsys)
        if not cls.vectors:
            assert code == 2 and "needs score: proxysel score" in err and "--signals" in err, err

    # 3. proxysel run with the signal in its config
    section = (f"score: {{signals: [{signals}], model: {tiny_model_dir}, judge: {tiny_model_dir}, "
               "max_length: 64}"
               if cls.command == "score" else
               f"train_proxy: {{model: {tiny_model_dir}, epochs: 2, checkpoints: 2, batch_size: 2, "
               "grad_accum: 1, max_length: 64}")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {tmp_path / 'run'}\ndata: {{path: {pool}}}\n"
                   + (f"reference: {ref}\n" if cls.needs_reference else "") + section
                   + "\nreport: {enabled: false}\n")
    code, err = run_cli(["run", cfg], capsys)
    if fits:
        assert code == 0, err
        assert_finite(tmp_path / "run", signal)
    else:
        assert code == 2 and f"{fmt} record has no" in err, err


