"""The data-parallel split (dynamics.distributed) in one process: ranks cover every micro-batch and
scoring batch exactly once, and the gradients of the ranks add up to the single-process gradient."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import write_qa_pool  # noqa: E402
from proxysel.data import read_pool  # noqa: E402
from proxysel.dynamics.distributed import Dist, collect_by_id, rank_batches  # noqa: E402
from proxysel.dynamics.train import TrainConfig, backward  # noqa: E402
from proxysel.engine import CPU_BATCH_COST, plan_batches  # noqa: E402
from proxysel.errors import ProxyselError  # noqa: E402
from proxysel.models.loader import load_causal_lm  # noqa: E402
from proxysel.models.render import Renderer  # noqa: E402


class LocalRank(Dist):
    """Rank ``rank`` of ``world`` whose collectives do nothing: the test adds the ranks up itself."""

    def all_reduce_sum(self, tensor):
        return tensor

    def all_reduce_grads(self, params):
        pass


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    path = write_qa_pool(tmp_path_factory.mktemp("pool") / "pool.jsonl", 24, seed=7, long_every=8)
    lm = load_causal_lm(str(tiny_model_dir))
    renderer = Renderer(lm.tokenizer, max_length=64)
    return lm, [renderer.encode(e) for e in read_pool(path).examples]


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("world", [2, 3, 5])
def test_rank_gradients_sum_to_the_single_process_gradient(setup, world):
    lm, encoded = setup
    model = lm.model.train()
    batch = [i for i in range(len(encoded)) if not encoded[i].truncated][:9]  # 5 micro-batches of 2
    cfg = TrainConfig(batch_size=2)
    pad = lm.tokenizer.pad_token_id
    model.zero_grad(set_to_none=True)
    ref = backward(model, encoded, batch, pad_id=pad, config=cfg, device="cpu")
    want = _grads(model)
    total = {n: torch.zeros_like(g) for n, g in want.items()}
    losses = np.full(len(batch), np.nan)
    loss_sum, tokens = 0.0, 0
    for rank in range(world):
        model.zero_grad(set_to_none=True)
        part = backward(model, encoded, batch, pad_id=pad, config=cfg, device="cpu",
                        dist=LocalRank(rank=rank, world=world))
        for n, g in _grads(model).items():
            total[n] += g
        mine = ~np.isnan(part.example_loss)
        assert not (mine & ~np.isnan(losses)).any()  # no example trained by two ranks
        losses[mine] = part.example_loss[mine]
        loss_sum += part.loss
        tokens += part.tokens
    for n in want:
        torch.testing.assert_close(total[n], want[n], rtol=1e-5, atol=1e-8, msg=n)
    np.testing.assert_array_equal(losses, ref.example_loss)  # same micro-batches: same bits
    assert tokens == ref.tokens
    assert loss_sum == pytest.approx(ref.loss, rel=1e-12)


@pytest.mark.parametrize("device", ["cpu", "cuda"])  # the plan only: CPU_BATCH_COST, or none
@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_rank_batches_are_the_engine_batches_split(setup, world, device):
    _, encoded = setup
    todo = [i for i, e in enumerate(encoded) if not e.truncated]
    lengths = [encoded[i].n_tokens for i in todo]
    batch_cost = CPU_BATCH_COST if device == "cpu" else None
    engine = [[todo[b] for b in batch] for batch in plan_batches(lengths, 128, batch_cost=batch_cost)]
    split = [rank_batches(encoded, 128, r, world, device) for r in range(world)]
    assert sorted(b for rank in split for b in rank) == sorted(engine)
    assert [b for rank in split for b in rank[:1]] == engine[:world]  # round robin, in order
    assert len(engine) > 3
    # score_losses plans each rank's batch again: it must stay one batch, in the same order
    for batch in engine:
        again = plan_batches([encoded[i].n_tokens for i in batch], 128, batch_cost=batch_cost)
        assert len(again) == 1 and [batch[b] for b in again[0]] == batch


def test_collect_by_id():
    ids, trunc = ["a", "b", "c", "d"], [False, True, False, False]
    got = collect_by_id(ids, trunc, [(["c", "a"], [3.0, 1.0]), (["d"], [4.0])])
    assert got[0] == 1.0 and np.isnan(got[1]) and got[2:] == [3.0, 4.0]
    with pytest.raises(ProxyselError, match="twice"):
        collect_by_id(ids, trunc, [(["a", "c"], [1.0, 3.0]), (["c", "d"], [3.0, 4.0])])
    with pytest.raises(ProxyselError, match="no rank sent"):
        collect_by_id(ids, trunc, [(["a"], [1.0]), (["d"], [4.0])])
    with pytest.raises(ProxyselError, match="not in this part"):
        collect_by_id(ids, trunc, [(["a", "c", "d", "zz"], [1.0, 3.0, 4.0, 0.0])])


def test_one_process_is_the_default(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = Dist.from_env("cpu")
    assert (d.rank, d.world, d.is_main) == (0, 1, True)
    assert d.broadcast(5) == 5 and d.gather("x") == ["x"] and d.on_main(lambda: 3) == 3
    assert d.device("cuda") == "cuda"
    with pytest.raises(ValueError):
        d.on_main(lambda: int("x"))
