"""Where the shards of a signal stage are computed: in this process, or on a Ray cluster.

A backend maps the shard function of a stage (``setup(device) -> state`` once per worker, then
``compute(state, examples, bar) -> pa.Table`` per shard) over the shards that are not done yet
and hands every finished shard back to the driver, which writes it into the run directory
(``signals.base.run_sharded``). Shard boundaries, the batches inside a shard and the code that
scores them are the same whichever backend runs them, so the results are too.

- ``local`` (``backends.local.LocalBackend``): one process, shard after shard.
- ``ray`` (``backends.ray.RayBackend``): a Ray Data ``map_batches`` pipeline over an actor pool,
  one model per actor; ``pip install 'proxysel[ray]'``.

>>> backend = make_backend("ray", address="auto", actors=4)  # doctest: +SKIP
"""

from __future__ import annotations

from proxysel.backends import ray as ray_backend
from proxysel.backends.base import Backend, Compute, Setup
from proxysel.backends.local import LocalBackend
from proxysel.errors import UsageError

__all__ = ["BACKENDS", "Backend", "Compute", "LocalBackend", "Setup", "make_backend", "shutdown"]

BACKENDS = ("local", "ray")


def make_backend(name: str = "local", *, address: str | None = None, actors: int | None = None,
                 cpus_per_actor: int | None = None) -> Backend:
    """The backend called ``name``; UsageError for an unknown name, Ray options without ``ray``,
    or ``ray`` when it is not installed."""
    if name not in BACKENDS:
        raise UsageError(f"--backend must be one of {list(BACKENDS)}, got {name!r}")
    for option, value in (("--ray-actors", actors), ("--ray-cpus-per-actor", cpus_per_actor)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UsageError(f"{option} must be an integer >= 1, got {value!r}")
    if name == "local":
        given = [o for o, v in (("--ray-address", address), ("--ray-actors", actors),
                                ("--ray-cpus-per-actor", cpus_per_actor)) if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only apply with --backend ray")
        return LocalBackend()
    ray_backend.require_ray()
    return ray_backend.RayBackend(address=address, actors=actors, cpus_per_actor=cpus_per_actor)


def shutdown() -> None:
    """Stop the local Ray cluster if proxysel started one (a cluster it only joined is left alone)."""
    ray_backend.shutdown()
