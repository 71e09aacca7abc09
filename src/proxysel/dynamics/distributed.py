"""Data-parallel proxy training (DDP) under ``torchrun`` or ``accelerate launch``.

    torchrun --nproc-per-node 2 -m proxysel.cli.main train-proxy pool.jsonl --out runs/r1 ...

Every rank reads the pool, encodes it and computes the same plan (``schedule``), so every rank
knows every effective batch, its order and its number of scored tokens without asking the others.
The contract, for W ranks:

- Training: each effective batch is cut into micro-batches exactly as in one process (longest
  first, ``batch_size`` each); rank r runs micro-batches r, r+W, r+2W, ... Each divides its token
  losses by the scored tokens of the *whole* effective batch, so the sum over ranks of the
  gradients (an all-reduce SUM, not DDP's average) is the gradient of the per-token mean over the
  effective batch, as in one process. The global batch is ``batch_size x grad_accum`` whatever W
  is: W splits the accumulation steps, it does not multiply the batch. A rank left without a
  micro-batch (a short last batch) contributes zeros.
- Scoring passes: every part (``shard_size`` examples) is planned into batches exactly as
  ``engine.score_losses`` plans it, and rank r scores batches r, r+W, ...; rank 0 gathers the
  per-example losses keyed by id, checks that every scored example came back exactly once, and
  writes the part. Nothing is padded or duplicated to even out the ranks. Each batch is the same
  batch a single process scores, so the numbers for given weights are bit-identical.
- Rank 0 alone opens and writes the run directory (manifest, shards, training state, history);
  the other ranks read the saved training state to resume, so on several nodes the run folder
  must be on a shared file system. An error on rank 0 while opening the run or its stage is sent
  to the other ranks, which stop with the same message.

Why 2 ranks do not give the bits of 1 process: the gradient is the same sum taken in another
order ((m0 + m2) + (m1 + m3) instead of ((m0 + m1) + m2) + m3), so it differs by float rounding
(~1e-7 relative), and AdamW carries that into the weights. tests/integration/test_ddp.py bounds
the effect on ppl_epoch and trajectory (docs/scale.md).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from proxysel.engine import batch_cost_for, plan_batches
from proxysel.errors import ProxyselError, UsageError

log = logging.getLogger(__name__)

#: Elements per all-reduce bucket of the gradient (float32: 64 MiB).
BUCKET = 1 << 24


@dataclass
class Dist:
    """This process's place in a data-parallel job: rank in [0, world), local_rank on its node.

    ``Dist()`` is the single-process case, where every method is a no-op.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str | None) -> Dist:
        """The job torchrun / accelerate launch described in $WORLD_SIZE, $RANK, $LOCAL_RANK.

        With more than one process, joins the process group (gloo on CPU, nccl on CUDA) unless
        the caller already did.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch
        import torch.distributed as dist

        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        cuda = device is not None and device.startswith("cuda")
        if cuda:
            if not torch.cuda.is_available():
                raise UsageError(f"--device {device}: torch sees no CUDA device on rank {rank}")
            torch.cuda.set_device(local_rank)
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        backend = dist.get_backend()
        if rank != 0:  # one voice on the terminal: the other ranks report warnings and errors only
            logging.getLogger("proxysel").setLevel(logging.WARNING)
        return cls(rank=rank, world=world, local_rank=local_rank, backend=backend, owns_group=owns)

    def device(self, device: str | None) -> str | None:
        """The device of this rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per rank)."""
        if self.world > 1 and device is not None and device.startswith("cuda"):
            if device not in ("cuda", f"cuda:{self.local_rank}"):
                log.warning("--device %s under a launcher: rank %d uses cuda:%d", device, self.rank,
                            self.local_rank)
            return f"cuda:{self.local_rank}"
        return device

    def close(self, ok: bool = True) -> None:
        """Leave the process group this object joined.

        ok: the job finished on this rank. All ranks then meet at a barrier first, so no rank
        tears its gloo threads down while another still has a collective in flight (seen as
        ``terminate called without an active exception`` and exit -6 on a rank). After a failure
        there is no barrier: the other ranks may never reach it.
        """
        if self.owns_group:
            import torch.distributed as dist

            if ok:
                dist.barrier()
            dist.destroy_process_group()
            self.owns_group = False

    # ---- collectives (no-ops for one process) ---------------------------------------------------

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj``, in rank order, on rank 0; None on the others."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def all_reduce_sum(self, tensor: Any) -> Any:
        """``tensor`` summed over ranks, in place (and returned)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_grads(self, params: Sequence[Any]) -> None:
        """Sum the ``.grad`` of ``params`` over ranks, in buckets of about BUCKET elements.

        A parameter with no gradient on any rank keeps ``grad=None`` (AdamW then skips it, as in
        one process); one with a gradient somewhere gets zeros where it had none.
        """
        if self.world == 1:
            return
        import torch

        params = list(params)
        dev = params[0].device
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=dev)
        self.all_reduce_sum(has)
        live = [p for p, h in zip(params, has.tolist()) if h > 0]
        for p in live:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        bucket: list[Any] = []
        size = 0
        for p in live + [None]:
            if p is not None and (not bucket or (size + p.numel() <= BUCKET
                                                 and p.grad.dtype == bucket[0].grad.dtype)):
                bucket.append(p)
                size += p.numel()
                continue
            if bucket:
                flat = torch.cat([q.grad.reshape(-1) for q in bucket])
                self.all_reduce_sum(flat)
                offset = 0
                for q in bucket:
                    q.grad.copy_(flat[offset:offset + q.numel()].view_as(q.grad))
                    offset += q.numel()
            bucket, size = ([p], p.numel()) if p is not None else ([], 0)

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on rank 0 and return its result there (None elsewhere).

        If it raises, rank 0 re-raises and every other rank raises a ProxyselError with the same
        message and exit code, instead of waiting forever in the next collective.
        """
        result, failure = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as e:
                failure = e
        if self.world > 1:
            sent = None if failure is None else (str(failure), getattr(failure, "exit_code", 1))
            sent = self.broadcast(sent)
            if sent is not None and not self.is_main:
                err = ProxyselError(f"rank 0 stopped: {sent[0]}")
                err.exit_code = sent[1]
                raise err
        if failure is not None:
            raise failure
        return result


def rank_batches(encoded: Sequence[Any], batch_tokens: int, rank: int, world: int,
                 device: Any) -> list[list[int]]:
    """The scoring batches of ``encoded`` that rank ``rank`` of ``world`` computes on ``device``.

    The batches are those ``engine.score_losses`` forms for the whole of ``encoded`` on that device
    (truncated examples left out, ``plan_batches`` over the rest with ``engine.batch_cost_for(device)``),
    as lists of positions in ``encoded``; rank r takes batches r, r+world, ... A batch of that
    plan, planned again alone, stays one batch (the plan is optimal per batch), so ``score_losses``
    on it computes the very batch of one process.
    """
    todo = [i for i, e in enumerate(encoded) if not e.truncated]
    lengths = [encoded[i].n_tokens for i in todo]
    batches = plan_batches(lengths, batch_tokens, batch_cost=batch_cost_for(device))
    return [[todo[b] for b in batch] for batch in batches[rank::world]]


def collect_by_id(ids: Sequence[str], truncated: Sequence[bool],
                  gathered: Sequence[tuple[list[str], list[float]]]) -> list[float]:
    """Assemble per-example values sent by the ranks as ``(ids, values)`` into the order of ``ids``.

    Truncated examples get NaN. Raises ProxyselError if an id comes back twice, an unknown id
    comes back, or an example that was not truncated did not come back.
    """
    where = {i: k for k, i in enumerate(ids)}
    out = [float("nan")] * len(ids)
    seen = [False] * len(ids)
    for rank, (sent_ids, values) in enumerate(gathered):
        for i, v in zip(sent_ids, values):
            k = where.get(i)
            if k is None:
                raise ProxyselError(f"rank {rank} sent a loss for id {i!r}, which is not in this part")
            if seen[k]:
                raise ProxyselError(f"the loss of id {i!r} came back twice (rank {rank} among others)")
            seen[k] = True
            out[k] = v
    missing = [ids[k] for k in range(len(ids)) if not seen[k] and not truncated[k]]
    if missing:
        raise ProxyselError(f"no rank sent the loss of {len(missing)} example(s), e.g. {missing[:5]}")
    return out
