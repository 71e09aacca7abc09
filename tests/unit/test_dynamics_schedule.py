"""The step plan of proxy training: lr schedule, checkpoint steps, seeded data order, batches."""

from __future__ import annotations

import numpy as np
import pytest

from proxysel.dynamics.schedule import checkpoint_steps, cosine_lr, epoch_order, make_plan, micro_batches


@pytest.mark.parametrize("warmup,total", [(0, 10), (3, 97), (1, 1), (5, 5)])
def test_cosine_lr_matches_transformers(warmup, total):
    torch = pytest.importorskip("torch")
    from transformers import get_cosine_schedule_with_warmup

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=2e-5)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=warmup, num_training_steps=total)
    for step in range(total):
        # The Trainer reads the lr for update `step` before calling scheduler.step().
        assert cosine_lr(step, base_lr=2e-5, warmup_steps=warmup, total_steps=total) == pytest.approx(
            opt.param_groups[0]["lr"], rel=1e-12, abs=1e-18)
        opt.step()
        sched.step()


@pytest.mark.parametrize("total,n", [(21, 8), (4875, 8), (10, 3), (7, 8), (1, 2), (100, 2)])
def test_checkpoint_steps_even_and_inclusive(total, n):
    steps = checkpoint_steps(total, n)
    assert steps[0] == 0 and steps[-1] == total
    assert steps == sorted(set(steps))
    assert len(steps) == min(n, total + 1)
    gaps = np.diff(steps)
    assert gaps.max() - gaps.min() <= 1  # evenly spaced up to rounding


def test_checkpoint_steps_none():
    assert checkpoint_steps(50, 0) == []


def test_epoch_order_is_seeded_and_fresh_each_epoch():
    a1, a2 = epoch_order(100, 42, 1), epoch_order(100, 42, 2)
    assert sorted(a1) == list(range(100))
    assert not np.array_equal(a1, a2)
    assert np.array_equal(a1, epoch_order(100, 42, 1))
    assert not np.array_equal(a1, epoch_order(100, 43, 1))


def test_micro_batches_sort_by_length_and_keep_members():
    lengths = {0: 5, 1: 9, 2: 9, 3: 1, 4: 7}
    mbs = micro_batches([0, 1, 2, 3, 4], lengths, 2)
    assert mbs == [[1, 2], [4, 0], [3]]


def test_plan_batches_cover_every_trainable_example_once_per_epoch():
    truncated = [i % 7 == 3 for i in range(45)]
    plan = make_plan(truncated, epochs=2, effective_batch=8, n_checkpoints=5, warmup_ratio=0.03)
    assert plan.steps_per_epoch == 5 and plan.total_steps == 10  # 39 trainable: 4 full batches + 7
    assert plan.warmup_steps == 1
    for epoch in range(2):
        seen = np.concatenate([plan.batch(epoch * 5 + k, seed=0) for k in range(5)])
        assert sorted(seen) == [i for i in range(45) if not truncated[i]]
    assert len(plan.batch(4, seed=0)) == 7
    assert not np.array_equal(plan.batch(0, seed=0), plan.batch(5, seed=0))


def test_plan_pass_steps_share_epoch_ends_with_checkpoints():
    plan = make_plan([False] * 64, epochs=3, effective_batch=8, n_checkpoints=7, warmup_ratio=0.0)
    assert plan.checkpoints == (0, 4, 8, 12, 16, 20, 24)
    # epoch ends 8, 16, 24 are checkpoints too: scored once
    assert plan.pass_steps == (0, 4, 8, 12, 16, 20, 24)
    assert plan.save_steps == (4, 8, 12, 16, 20, 24)


def test_plan_lp_app_minimum_and_online():
    exact = make_plan([False] * 64, epochs=1, effective_batch=32, n_checkpoints=0, warmup_ratio=0.03)
    assert exact.pass_steps == (0, 2)  # one epoch plus two passes
    online = make_plan([False] * 64, epochs=1, effective_batch=32, n_checkpoints=0, warmup_ratio=0.03,
                       online=True)
    assert online.pass_steps == (0,)  # one epoch plus one pass
    assert online.save_steps == (2,)
