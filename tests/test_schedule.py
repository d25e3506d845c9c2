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


def test_sawtooth_rewinds_to_peak_at_every_update():
    cfg = LRConfig(peak=1e-3, warmup_steps=10, decay="linear", rewind=True, rewind_style="sawtooth")
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


def test_reference_rewinding_matches_hand_computed_values():
    """Intel's linear rewinding schedule: T=100, W=10, updates every f=10 from B=20 to E=60.

    N = T - (E - B) = 60, N - W = 50. Hand-computed multipliers:
    t=0: 0/10; t=5: 5/10; t=10 (before B): (60-10)/50 = 1.0; t=15: 45/50;
    t=20 (B, r=0): (60-20)/50 = 0.8; t=25: 35/50; t=29: 31/50;
    t=30 (r=10): (60-30+10)/50 = 0.8 again; t=39: 31/50; t=55 (r=30): 35/50;
    t=60 (E): (100-60)/50 = 0.8; t=80: 20/50; t=99: 1/50; t=100: 0.
    """
    cfg = LRConfig(peak=1e-3, warmup_steps=10, decay="linear", rewind=True)
    assert cfg.rewind_style == "reference"
    updates = [20, 30, 40, 50, 60]
    expected = {0: 0.0, 5: 0.5, 10: 1.0, 15: 0.9, 20: 0.8, 25: 0.7, 29: 0.62, 30: 0.8, 39: 0.62,
                55: 0.7, 60: 0.8, 80: 0.4, 99: 0.02, 100: 0.0}
    for step, multiplier in expected.items():
        assert lr_at(step, cfg, 100, updates) == pytest.approx(1e-3 * multiplier, abs=1e-15), step


def test_reference_rewinding_stays_near_peak_while_pruning():
    """From step 0 with no warm-up, the LR never falls below peak * (1 - f / N) while the masks change."""
    cfg = LRConfig(peak=1.0, warmup_steps=0, rewind=True)
    updates = list(range(0, 201, 20))  # B=0, E=200, f=20; T=300 -> N=100
    lrs = [lr_at(s, cfg, 300, updates) for s in range(300)]
    assert min(lrs[:200]) == pytest.approx(1.0 - 19 / 100)
    assert lrs[0] == lrs[20] == lrs[200] == pytest.approx(1.0)
    assert all(b < a for a, b in itertools.pairwise(lrs[200:]))  # then a linear decay to 0 at T
    assert lrs[299] == pytest.approx(1 / 100)


def test_lr_without_rewind_decays_monotonically():
    cfg = LRConfig(peak=1e-3, warmup_steps=5, rewind=False, decay="cosine", final_ratio=0.1)
    lrs = [lr_at(s, cfg, 50, [0, 10, 20]) for s in range(5, 51)]
    assert all(b <= a for a, b in itertools.pairwise(lrs))
    assert lrs[-1] == pytest.approx(1e-4)


def test_reference_rewinding_is_capped_at_peak_when_pruning_starts_inside_the_warm_up():
    cfg = LRConfig(peak=1.0, warmup_steps=2, rewind=True)
    updates = [0, 2, 4, 6, 8]  # T=12 -> N=4, N-W=2: (N - t + r) / 2 = 2 at every update
    lrs = [lr_at(s, cfg, 12, updates) for s in range(13)]
    assert lrs[:2] == [0.0, 0.5]
    assert lrs[2:11] == [1.0] * 9 and lrs[11:] == [0.5, 0.0]  # t >= E=8: (12 - t) / 2, capped at 1
