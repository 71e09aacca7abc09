"""The Ray backend: a stage's shards as a Ray Data pipeline over a pool of model-holding actors.

    driver                                        actors (ActorPoolStrategy, one model each)
    ------                                        ------------------------------------------
    read + validate the pool, plan the shards
    from_items([{shard, examples}, ...])  ---->   ShardWorker.__init__: setup(device) once
                                                  ShardWorker.__call__: compute(state, examples)
    write each returned shard (atomic, marker) <-- {shard, table (Arrow IPC), worker, tokens}

The driver reads the input (so bad records stop the run before any cluster work, exit code 2),
cuts it into the same shards as the local backend and sends only the shards without a
completion marker; each row of the Ray dataset is one shard. The actors run the stage's own
``setup``/``compute`` functions, so the batches and the numbers are those of the local backend.
Results stream back as they finish and the driver writes each one with the run store's atomic
write and marker, so a killed driver resumes from the finished shards, on either backend.

Actors: with GPUs in the cluster (and ``--device`` not ``cpu``) one actor per GPU with
``num_gpus=1``; Ray sets each actor's CUDA_VISIBLE_DEVICES to its own GPU, which it then sees as
``cuda:0``. Without GPUs, CPU actors with ``--ray-cpus-per-actor`` cores each (default 1, and
torch gets that many threads). An actor that was given a GPU on a machine where torch sees no
CUDA device (logical GPUs in tests) scores on the CPU.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from typing import Any, Iterator

import pyarrow as pa

from proxysel import errors
from proxysel.backends.base import Compute, Setup, TokenCount
from proxysel.errors import ProxyselError, UsageError

log = logging.getLogger(__name__)

#: True while a local Ray cluster that proxysel started is running (``shutdown`` stops it).
_started = False


def require_ray() -> None:
    """Raise UsageError with the install command if ray (with Ray Data) is missing."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as e:
        raise UsageError(f"--backend ray needs ray with Ray Data ({e.name or 'ray'} is missing): "
                         "pip install 'proxysel[ray]'") from e


def connect(address: str | None = None) -> None:
    """Join the cluster at ``address`` ("auto", "ray://host:10001", host:port), or $RAY_ADDRESS, or
    start a local one. A Ray session that is already initialised in this process is used as is."""
    global _started
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError) as e:
        raise UsageError("cannot connect to the Ray cluster at "
                         f"{address or os.environ.get('RAY_ADDRESS')}: {e}") from e
    _started = True
    log.info("ray: connected to %s (%s)", address or os.environ.get("RAY_ADDRESS") or "a new local cluster",
             ray.cluster_resources())


def shutdown() -> None:
    """Disconnect from Ray if ``connect`` initialised it (stopping a local cluster it started)."""
    global _started
    if _started:
        import ray

        ray.shutdown()
        _started = False


#: Set in every actor: no per-actor download/loading bars or advisory warnings on the driver's terminal.
ACTOR_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
             "TOKENIZERS_PARALLELISM": "false"}


class ShardWorker:
    """The Ray Data callable class: holds one loaded stage state, computes shards.

    Input rows: ``shard`` (int64), ``examples`` (binary: the pickled list of Examples, sent by
    the driver to its own actors). Output rows: ``shard``, ``table`` (the shard's table as an
    Arrow IPC stream, so types and values come back exactly), ``worker`` (JSON), ``tokens``.
    """

    def __init__(self, setup: Setup, compute: Compute, device: str | None, threads: int | None) -> None:
        import ray

        for key, value in ACTOR_ENV.items():  # before the model stack is imported in this actor
            os.environ.setdefault(key, value)
        ctx = ray.get_runtime_context()
        gpu_ids = [str(g) for g in ctx.get_accelerator_ids().get("GPU", [])]
        if device is None or device.startswith("cuda"):
            import torch

            # Ray restricts CUDA_VISIBLE_DEVICES to the actor's GPU: it is cuda:0 here.
            device = "cuda" if gpu_ids and torch.cuda.is_available() else "cpu"
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.state = setup(device)
        self.compute = compute
        self.worker = json.dumps({"node": ctx.get_node_id(), "pid": os.getpid(), "gpu_ids": gpu_ids,
                                  "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                  "device": device}, sort_keys=True)

    def __call__(self, batch: Any) -> Any:
        shards, tables, tokens = [], [], []
        for shard, blob in zip(batch.column("shard").to_pylist(), batch.column("examples").to_pylist()):
            bar = TokenCount()
            table = self.compute(self.state, pickle.loads(blob), bar)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            shards.append(shard)
            tables.append(sink.getvalue().to_pybytes())
            tokens.append(bar.tokens)
        return pa.table({"shard": pa.array(shards, pa.int64()), "table": pa.array(tables, pa.binary()),
                         "worker": pa.array([self.worker] * len(shards), pa.string()),
                         "tokens": pa.array(tokens, pa.int64())})


_REMOTE_ERROR = re.compile(r"proxysel\.errors\.(\w+): (.+)")


def _cause(err: BaseException) -> BaseException:
    """The proxysel error an actor raised, rebuilt from Ray's error (which keeps only its traceback
    text), so that a bad option still exits with code 2 and a clear message; else ``err``."""
    texts, seen = [], err
    for _ in range(8):
        texts.append(str(seen))
        nxt = getattr(seen, "cause", None) or seen.__cause__
        if not isinstance(nxt, BaseException):
            break
        seen = nxt
    for text in texts:
        found = _REMOTE_ERROR.findall(text)
        if found:
            name, message = found[-1]
            cls = getattr(errors, name, None)
            if isinstance(cls, type) and issubclass(cls, ProxyselError):
                try:
                    return cls(message.strip())
                except TypeError:  # an error class with another signature (BadInputError)
                    out = ProxyselError(message.strip())
                    out.exit_code = cls.exit_code
                    return out
    return err


class RayBackend:
    """Scores shards on a Ray cluster (``address``: "auto", "ray://head:10001", None = local/$RAY_ADDRESS).

    actors: size of the actor pool (default: one per GPU, or cluster CPUs / cpus_per_actor).
    cpus_per_actor: CPUs reserved per actor, and torch threads of a CPU actor (default 1).
    """

    name = "ray"

    def __init__(self, address: str | None = None, actors: int | None = None,
                 cpus_per_actor: int | None = None) -> None:
        self.address = address
        self.actors = actors
        self.cpus_per_actor = cpus_per_actor
        self._used: dict[str, Any] = {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, **self._used}

    def plan(self, device: str | None, n_shards: int) -> dict[str, Any]:
        """Actor count and resources for ``n_shards`` shards on the connected cluster."""
        import ray

        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        if device is not None and device.startswith("cuda") and not gpus:
            raise UsageError(f"--device {device} with --backend ray: the cluster has no GPUs "
                             f"(resources {resources})")
        use_gpu = gpus > 0 and device != "cpu"
        cpus_per_actor = self.cpus_per_actor or 1
        actors = self.actors or (gpus if use_gpu else max(1, cpus // cpus_per_actor))
        return {"actors": max(1, min(actors, n_shards)), "num_gpus_per_actor": 1 if use_gpu else 0,
                "cpus_per_actor": cpus_per_actor}

    def map_shards(self, shards: list[tuple[int, list]], *, setup: Setup, compute: Compute,
                   device: str | None, bar: Any) -> Iterator[tuple[int, Any, dict[str, Any], int]]:
        if not shards:
            return
        import ray
        import ray.data

        connect(self.address)
        plan = self.plan(device, len(shards))
        self._used = dict(plan)
        ctx = ray.data.DataContext.get_current()
        ray_log = logging.getLogger("ray.data")
        saved = ctx.enable_progress_bars, ray_log.level
        ctx.enable_progress_bars = False  # proxysel's own bar counts examples and tokens
        ray_log.setLevel(logging.ERROR)
        sizes = {k: len(examples) for k, examples in shards}
        rows = [{"shard": k, "examples": pickle.dumps(examples, protocol=pickle.HIGHEST_PROTOCOL)}
                for k, examples in shards]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        gpu = plan["num_gpus_per_actor"]
        resources = {"num_gpus": gpu} if gpu else {"num_cpus": plan["cpus_per_actor"]}
        ds = ds.map_batches(ShardWorker, batch_size=1, batch_format="pyarrow",
                            fn_constructor_kwargs={"setup": setup, "compute": compute, "device": device,
                                                   "threads": None if gpu else plan["cpus_per_actor"]},
                            compute=ray.data.ActorPoolStrategy(size=plan["actors"]), **resources)
        log.info("ray: %d shards on %d actors (%d GPU, %d CPU each)", len(rows), plan["actors"],
                 plan["num_gpus_per_actor"], plan["cpus_per_actor"])
        try:
            for block in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                for shard, blob, worker, tokens in zip(block.column("shard").to_pylist(),
                                                       block.column("table").to_pylist(),
                                                       block.column("worker").to_pylist(),
                                                       block.column("tokens").to_pylist()):
                    table = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
                    if bar is not None:
                        bar.update(sizes[shard], tokens)
                    yield shard, table, json.loads(worker), tokens
        except Exception as e:
            cause = _cause(e)
            if cause is not e:
                raise cause from e
            raise
        finally:
            ctx.enable_progress_bars, level = saved
            ray_log.setLevel(level)
