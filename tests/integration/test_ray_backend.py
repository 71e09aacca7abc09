"""`score --backend ray` on a local Ray cluster: the same bytes as the local backend, one GPU id per
actor, and a driver killed with SIGKILL that resumes to the bytes of an uninterrupted local run.

The cluster has spare logical CPUs (4 on a 2-core machine: reruns can hang when every CPU is
taken) and 2 logical GPUs, so the default plan makes one GPU actor per GPU; torch sees no CUDA
device there, so they score on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
ray = pytest.importorskip("ray")

from conftest import kill_after_markers, write_qa_pool  # noqa: E402
from proxysel import api  # noqa: E402
from proxysel.models.bundled import is_available  # noqa: E402

pytestmark = pytest.mark.ray

SIGNALS = ["loss", "ifd", "ask_llm"] + (["embedding"] if is_available("minilm") else [])
OPTS = dict(max_length=64, shard_size=8, batch_tokens=512)


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return write_qa_pool(tmp_path_factory.mktemp("ray-pool") / "pool.jsonl", 64, seed=5, long_every=16)


def _files(run: Path) -> dict[str, bytes]:
    """Every result file of a run folder (not the manifest, the logs or the lock), by relative path."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.suffix == ".parquet"}


def _stages(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())["stages"]


def test_ray_gives_the_bytes_of_local_and_one_gpu_per_actor(cluster, pool, tiny_model_dir, tmp_path):
    common = dict(signals=SIGNALS, model=str(tiny_model_dir), judge=str(tiny_model_dir), **OPTS)
    local = api.score(pool, out=tmp_path / "local", **common)
    remote = api.score(pool, out=tmp_path / "ray", backend="ray", **common)
    assert ray.is_initialized()  # a cluster the caller started is left running
    want, got = _files(local), _files(remote)
    assert "scores.parquet" in want and "stages/loss/shard-00007.parquet" in want
    assert got.keys() == want.keys()
    assert [k for k in want if got[k] != want[k]] == []

    for sig in SIGNALS:
        entry = _stages(remote)[sig]
        assert entry["shards_computed"] == 8 and entry["backend"]["name"] == "ray"
        assert entry["backend"]["actors"] == 2 and entry["backend"]["num_gpus_per_actor"] == 1
    workers = [w for sig in SIGNALS for w in _stages(remote)[sig]["backend"]["workers"]]
    assert all(len(w["gpu_ids"]) == 1 and w["cuda_visible_devices"] == w["gpu_ids"][0] for w in workers)
    assert all(w["device"] == "cpu" for w in workers)  # logical GPUs: torch falls back to the CPU
    # The two actors of a stage hold different GPUs (a stage whose shards all went to one actor
    # lists one worker; over four stages both actors show up).
    for sig in SIGNALS:
        ws = _stages(remote)[sig]["backend"]["workers"]
        assert len({w["gpu_ids"][0] for w in ws}) == len({w["pid"] for w in ws})
    assert {w["gpu_ids"][0] for w in workers} == {"0", "1"}


def test_cpu_actors_and_resume_from_local_shards(cluster, pool, tiny_model_dir, tmp_path):
    """A run half done by the local backend is finished by CPU actors with the same bytes."""
    common = dict(signals=["loss"], model=str(tiny_model_dir), **OPTS)
    ref = api.score(pool, out=tmp_path / "ref", **common)
    run = api.score(pool, out=tmp_path / "run", **common)
    stage = run / "stages" / "loss"
    for k in (1, 4, 6):  # as if a local run had died before these shards
        (stage / f"shard-{k:05d}.done").unlink()
    (stage / "COMPLETE").unlink()
    (run / "scores.parquet").unlink()
    api.score(pool, out=run, backend="ray", device="cpu", ray_actors=2, **common)
    entry = _stages(run)["loss"]
    assert entry["shards_computed"] == 3 and entry["backend"]["num_gpus_per_actor"] == 0
    assert all(w["gpu_ids"] == [] and w["device"] == "cpu" for w in entry["backend"]["workers"])
    assert _files(run) == _files(ref)


def _driver(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxysel.cli.main", "-q", "score", *args]


def test_driver_killed_then_resumed_matches_local(cluster, tiny_model_dir, tmp_path):
    data = write_qa_pool(tmp_path / "pool.jsonl", 1200, seed=2)
    args = [str(data), "--model", str(tiny_model_dir), "--max-length", "64", "--shard-size", "20"]
    ref = api.score(data, out=tmp_path / "ref", model=str(tiny_model_dir), max_length=64, shard_size=20)

    run = tmp_path / "run"
    stage = run / "stages" / "loss"
    ray_args = ["--backend", "ray", "--ray-address", cluster, "--ray-actors", "1", "--device", "cpu"]
    env = {**os.environ, "PROXYSEL_QUIET": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_driver(*args, *ray_args, "--out", str(run)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done_at_kill = kill_after_markers(proc, stage, 2)
    assert 0 < done_at_kill < 60, "the kill should land mid-run"
    assert not (run / "scores.parquet").exists()

    r = subprocess.run(_driver(*args, *ray_args, "--out", str(run)), env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert (run / "scores.parquet").read_bytes() == (ref / "scores.parquet").read_bytes()
    assert _stages(run)["loss"]["shards_computed"] == 60 - done_at_kill


def test_an_actor_error_stops_the_run_with_its_message(cluster):
    from proxysel.backends.ray import RayBackend
    from proxysel.errors import UsageError

    def compute(state, examples, bar):
        raise UsageError(f"shard of {examples} refused")

    backend = RayBackend(actors=1)
    with pytest.raises(UsageError, match=r"shard of \[.*\] refused"):
        list(backend.map_shards([(0, ["a"]), (1, ["b"])], setup=lambda device: None, compute=compute,
                                device="cpu", bar=None))
