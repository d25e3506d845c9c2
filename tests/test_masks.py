"""Exact sparsity, pattern shape, and masks that survive optimizers (property tests)."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from pruneofa.config.schema import SparsityConfig, TargetsConfig
from pruneofa.masks import apply_masks_, attach_mask, masked_modules
from pruneofa.masks.core import zero_masked_optimizer_state_
from pruneofa.pruning.patterns import get_pattern, zeros_for
from pruneofa.pruning.sparsifier import Sparsifier
from pruneofa.pruning.targets import LayerRef


class TwoLayers(nn.Module):
    def __init__(self, d_in: int, d_hidden: int, d_out: int) -> None:
        super().__init__()
        self.first = nn.Linear(d_in, d_hidden)
        self.second = nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.relu(self.first(x)))


def _sparsifier(model: nn.Module, pattern: str, allocation: str = "uniform") -> Sparsifier:
    cfg = SparsityConfig(pattern=pattern, allocation=allocation, targets=TargetsConfig(scope="all"))
    return Sparsifier(model, cfg)


dims = st.integers(min_value=1, max_value=12).map(lambda k: 4 * k)  # block1x4 needs input dims % 4 == 0
sparsities = st.floats(min_value=0.0, max_value=0.99, allow_nan=False)
patterns = st.sampled_from(["unstructured", "block1x4"])


@settings(max_examples=60, deadline=None)
@given(d_in=dims, d_hidden=dims, d_out=st.integers(1, 40), sparsity=sparsities, pattern=patterns,
       seed=st.integers(0, 2**16))
def test_uniform_sparsity_is_exact_and_pattern_holds(d_in, d_hidden, d_out, sparsity, pattern, seed):
    torch.manual_seed(seed)
    model = TwoLayers(d_in, d_hidden, d_out)
    sp = _sparsifier(model, pattern)
    sp.prune_to(sparsity)
    group = get_pattern(pattern).group_size
    for layer in sp.layers:
        mask = layer.module.weight_mask
        expected = zeros_for(sparsity, mask.numel() // group) * group
        assert int((~mask).sum()) == expected
        assert get_pattern(pattern).holds(mask, layer.in_axis)
        assert torch.count_nonzero(layer.module.weight[~mask]) == 0
    assert sp.audit().ok


@settings(max_examples=30, deadline=None)
@given(d_in=dims, d_hidden=dims, sparsity=sparsities, pattern=patterns, seed=st.integers(0, 2**16))
def test_global_allocation_is_exact_over_all_layers(d_in, d_hidden, sparsity, pattern, seed):
    torch.manual_seed(seed)
    model = TwoLayers(d_in, d_hidden, 8)
    sp = _sparsifier(model, pattern, "global")
    sp.prune_to(sparsity)
    group = get_pattern(pattern).group_size
    total = sum(layer.module.weight.numel() for layer in sp.layers)
    zeros = sum(int((~layer.module.weight_mask).sum()) for layer in sp.layers)
    assert zeros == zeros_for(sparsity, total // group) * group
    assert sp.audit().ok


def test_ties_are_broken_deterministically_by_index():
    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    sp = Sparsifier(layer, SparsityConfig(), [LayerRef("", layer)])
    sp.prune_to(0.5)
    assert layer.weight_mask.flatten().tolist() == [False] * 4 + [True] * 4


def test_gradual_pruning_never_revives_a_pruned_weight():
    torch.manual_seed(0)
    model = TwoLayers(16, 16, 4)
    sp = _sparsifier(model, "unstructured")
    previous = {layer.name: layer.module.weight_mask.clone() for layer in sp.layers}
    for target in (0.2, 0.5, 0.8, 0.9):
        with torch.no_grad():  # make some live weights exactly zero: ties with the pruned ones
            model.first.weight[model.first.weight_mask][:3] = 0.0
        sp.prune_to(target)
        for layer in sp.layers:
            now = layer.module.weight_mask
            assert not (now & ~previous[layer.name]).any()
            previous[layer.name] = now.clone()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=patterns, accum=st.integers(1, 3), seed=st.integers(0, 2**16),
       optimizer_name=st.sampled_from(["adamw", "sgd"]))
def test_200_optimizer_steps_with_decay_momentum_and_accumulation_keep_masked_weights_zero(
    pattern, accum, seed, optimizer_name
):
    torch.manual_seed(seed)
    model = TwoLayers(8, 16, 4)
    sp = _sparsifier(model, pattern)
    if optimizer_name == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9, weight_decay=0.1)
    sp.bind_optimizer(opt)
    x, y = torch.randn(64, 8), torch.randn(64, 4)
    for step in range(200):
        if step in (20, 60, 120):  # mask updates mid-training: moments of newly pruned weights must not revive them
            sp.prune_to({20: 0.5, 60: 0.75, 120: 0.9}[step])
        for micro in range(accum):
            xb, yb = x[micro::accum], y[micro::accum]
            loss = nn.functional.mse_loss(model(xb), yb) / accum
            loss.backward()
        for layer in sp.layers:  # gradients of masked entries are zero before clipping and the step
            assert torch.count_nonzero(layer.module.weight.grad[~layer.module.weight_mask]) == 0
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        for layer in sp.layers:
            assert torch.count_nonzero(layer.module.weight[~layer.module.weight_mask]) == 0
    assert sp.check().ok
    # the weights did train: the live ones moved
    assert all(torch.count_nonzero(layer.module.weight) > 0 for layer in sp.layers)


def test_optimizer_state_of_newly_pruned_entries_is_zeroed():
    torch.manual_seed(0)
    model = TwoLayers(8, 8, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(4, 8)).sum().backward()
    opt.step()
    sp = _sparsifier(model, "unstructured")
    sp.bind_optimizer(opt)
    sp.prune_to(0.5)
    for layer in sp.layers:
        state = opt.state[layer.module.weight]
        assert torch.count_nonzero(state["exp_avg"][~layer.module.weight_mask]) == 0
        assert torch.count_nonzero(state["exp_avg_sq"][~layer.module.weight_mask]) == 0
    assert zero_masked_optimizer_state_(opt, model) == 4


def test_masks_survive_dtype_and_device_moves_and_stay_bool():
    model = TwoLayers(8, 8, 2)
    sp = _sparsifier(model, "unstructured")
    sp.prune_to(0.5)
    before = {name: m.weight_mask.clone() for name, m, _ in masked_modules(model)}
    model.half().float().to("cpu")
    for name, module, _ in masked_modules(model):
        assert module.weight_mask.dtype == torch.bool
        assert torch.equal(module.weight_mask, before[name])
    model(torch.randn(2, 8)).sum().backward()  # the gradient hook still reads the (moved) buffer
    assert torch.count_nonzero(model.first.weight.grad[~model.first.weight_mask]) == 0


def test_attach_is_idempotent_and_masks_are_state_dict_entries():
    layer = nn.Linear(4, 4)
    attach_mask(layer)
    attach_mask(layer)
    assert [k for k in layer.state_dict() if k.endswith("_mask")] == ["weight_mask"]
    with torch.no_grad():
        layer.weight_mask[0] = False
    apply_masks_(layer)
    assert torch.count_nonzero(layer.weight[0]) == 0
    layer.weight.sum().backward()
    assert torch.count_nonzero(layer.weight.grad[0]) == 0
    assert torch.all(layer.weight.grad[1:] == 1)


def test_drift_is_reported_with_a_per_layer_table():
    import pytest

    from pruneofa.errors import SparsityDriftError

    model = TwoLayers(8, 8, 2)
    sp = _sparsifier(model, "unstructured")
    sp.prune_to(0.5)
    with torch.no_grad():  # something outside pruneofa revives a weight and flips a mask bit
        model.first.weight[~model.first.weight_mask] = 1.0
        model.second.weight_mask[0, 0] = ~model.second.weight_mask[0, 0]
    with pytest.raises(SparsityDriftError) as info:
        sp.check("unit test")
    text = str(info.value)
    assert "2 of 2 layers drifted" in text
    assert "first" in text and "masked weights non-zero" in text
    assert "second" in text and "expected" in text
    assert "layer" in text.splitlines()[1]  # the table header follows the summary line


def test_the_audit_reports_the_weights_sparsity_beside_the_masks():
    model = TwoLayers(8, 8, 2)
    sp = _sparsifier(model, "unstructured")
    sp.prune_to(0.5)
    overall = sp.audit("unit test").overall()
    assert overall["sparsity"] == 0.5 and overall["weight_sparsity"] >= 0.5
    with torch.no_grad():  # regrown weights (a run with the lock off): the masks still say 50%
        model.first.weight[~model.first.weight_mask] = 1.0
        model.second.weight[~model.second.weight_mask] = 1.0
    overall = sp.audit("unit test").overall()
    assert overall["sparsity"] == 0.5 and overall["weight_sparsity"] == 0.0


def test_locked_pattern_refuses_new_masks():
    import pytest

    from pruneofa.errors import PruneofaError

    model = TwoLayers(8, 8, 2)
    sp = _sparsifier(model, "unstructured")
    sp.prune_to(0.5)
    sp.lock()
    with pytest.raises(PruneofaError, match="locked"):
        sp.prune_to(0.9)


def test_detach_removes_buffers_and_hooks():
    from pruneofa.masks import detach_masks

    model = TwoLayers(8, 8, 2)
    sp = _sparsifier(model, "unstructured")
    sp.prune_to(0.5)
    removed = detach_masks(model)
    assert sorted(removed) == ["first.weight_mask", "second.weight_mask"]
    assert list(masked_modules(model)) == []
    model(torch.randn(2, 8)).sum().backward()
    assert torch.count_nonzero(model.first.weight.grad[~removed["first.weight_mask"]]) > 0


def test_masks_is_a_leaf_that_pruning_builds_on():
    """masks/ imports no other pruneofa package (pruning/ imports masks/, never the other way round)."""
    import ast
    from pathlib import Path

    import pruneofa.masks

    allowed = ("pruneofa.masks", "pruneofa.errors")
    found = []
    for file in Path(pruneofa.masks.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            found += [(file.name, n) for n in names if n.startswith("pruneofa") and not n.startswith(allowed)]
    assert not found, found


def test_audit_takes_the_pattern_it_checks():
    from pruneofa.masks.audit import audit_layer

    weight = torch.tensor([[1.0, 0.0, 0.0, 0.0, 2.0, 3.0, 4.0, 5.0]])
    mask = weight != 0
    args = ("w", weight, mask)
    assert audit_layer(*args, get_pattern("unstructured"), 1, 0.375, 3).ok
    broken = audit_layer(*args, get_pattern("block1x4"), 1, 0.375, 3)
    assert not broken.pattern_ok and broken.pattern == "block1x4"
