from __future__ import annotations

import itertools

import pytest

from pruneofa.config.schema import GMPConfig, LRConfig
from pruneofa.pruning.schedule import GMPSchedule, lr_at


def test_gmp_sparsity_follows_the_cubic_formula_at_every_update():
    cfg = GMPConfig(initial_sparsity=0.0, final_sparsity=0.9, begin_step=10, end_step=110, frequency=20)
    sched = GMPSchedule.from_config(cfg)
    assert sched.update_steps() == [10, 30, 50, 70, 90, 110]
    n_dt = 100
    for t in sched.update_steps():
        expected = 0.9 + (0.0 - 0.9) * (1 - (t - 10) / n_dt) ** 3
        assert sched.sparsity_at(t) == pytest.approx(expected, abs=1e-12)
    assert sched.sparsity_at(0) == 0.0
    assert sched.sparsity_at(29) == sched.sparsity_at(10)  # constant between updates
    assert sched.sparsity_at(500) == pytest.approx(0.9)
    values = [sched.sparsity_at(t) for t in sched.update_steps()]
    assert all(b > a for a, b in itertools.pairwise(values))


def test_lr_warms_up_then_rewinds_to_peak_at_every_update():
    cfg = LRConfig(peak=1e-3, warmup_steps=10, decay="linear", rewind=True)
    updates = [0, 20, 40, 60]
    lrs = [lr_at(s, cfg, 100, updates) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4)  # warm-up: the update at step 0 does not rewind
    assert lrs[9] == pytest.approx(1e-3)
    for u in updates[1:]:
        assert lrs[u] == pytest.approx(1e-3), u
        assert lrs[u - 1] < lrs[u]
    # after the last update the LR decays to 0 over the rest of training
    assert all(b < a for a, b in itertools.pairwise(lrs[60:]))
    assert lr_at(100, cfg, 100, updates) == pytest.approx(0.0)


def test_lr_without_rewind_decays_monotonically():
    cfg = LRConfig(peak=1e-3, warmup_steps=5, rewind=False, decay="cosine", final_ratio=0.1)
    lrs = [lr_at(s, cfg, 50, [0, 10, 20]) for s in range(5, 51)]
    assert all(b <= a for a, b in itertools.pairwise(lrs))
    assert lrs[-1] == pytest.approx(1e-4)
