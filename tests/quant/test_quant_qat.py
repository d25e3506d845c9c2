"""QAT: mask-aware fake-quant swap, exact zeros through training, freezing, state round trips."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_model as st_load_model
from safetensors.torch import save_model as st_save_model
from tests.conftest import tiny_bert_config
from transformers import BertForSequenceClassification

from pruneofa import Sparsifier, save_model
from pruneofa.config.schema import SparsityConfig
from pruneofa.distill.losses import kd_logits_loss
from pruneofa.errors import PruneofaError
from pruneofa.masks import get_mask, masked_modules
from pruneofa.quant import (
    QAT_FILE,
    MaskedQATLinear,
    QATConfig,
    QATEmbedding,
    freeze_observers_,
    load_qat_model,
    observer_step_,
    prepare_qat_,
    qat_metadata,
    quantized_weights,
)


def pruned_classifier(seed: int = 0, pattern: str = "unstructured") -> tuple[BertForSequenceClassification, Sparsifier]:
    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_bert_config(num_labels=3))
    sparsifier = Sparsifier(model, SparsityConfig(pattern=pattern))
    sparsifier.prune_to(0.9)
    sparsifier.lock()
    return model, sparsifier


def batch(seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(0, 120, (4, 8), generator=gen),
            "labels": torch.randint(0, 3, (4,), generator=gen)}


def masked_nonzeros(model: torch.nn.Module) -> int:
    return sum(int(torch.count_nonzero(m.weight[~get_mask(m)])) for _, m, _ in masked_modules(model))


def test_masks_survive_the_swap_and_parameters_are_reused():
    model, sparsifier = pruned_classifier()
    before = {n: (m.weight, get_mask(m)) for n, m, _ in masked_modules(model)}
    names = prepare_qat_(model, QATConfig(), sparsifier)
    modules = dict(model.named_modules())
    assert set(before) <= set(names)
    for name, (weight, mask) in before.items():
        assert isinstance(modules[name], MaskedQATLinear)
        assert modules[name].weight is weight  # optimizer references stay valid
        assert torch.equal(get_mask(modules[name]), mask)
    assert isinstance(model.bert.embeddings.word_embeddings, QATEmbedding)
    assert all(layer.module is modules[layer.name] for layer in sparsifier.layers)
    sparsifier.check("after swap")
    with pytest.raises(PruneofaError, match="already QAT-prepared"):
        prepare_qat_(model, QATConfig())


def test_prepare_needs_masks():
    model = BertForSequenceClassification(tiny_bert_config(num_labels=3))
    with pytest.raises(PruneofaError, match="no masked Linear"):
        prepare_qat_(model, QATConfig())


@pytest.mark.parametrize(("granularity", "steps"), [("per_channel", 50), ("per_tensor", 10)])
def test_masked_weights_exactly_zero_through_50_adamw_steps_with_distillation(granularity, steps):
    teacher = BertForSequenceClassification(tiny_bert_config(num_labels=3)).eval()  # the dense task teacher
    model, sparsifier = pruned_classifier()
    prepare_qat_(model, QATConfig(weight_granularity=granularity, act_observer_momentum=0.1), sparsifier)
    start = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    sparsifier.bind_optimizer(optimizer)
    data = batch()
    losses = []
    for step in range(steps):
        out = model(**data)
        with torch.no_grad():
            teacher_logits = teacher(input_ids=data["input_ids"]).logits
        loss = 0.5 * out.loss + 0.5 * kd_logits_loss(out.logits, teacher_logits, temperature=2.0)
        loss.backward()
        for _, module, _ in masked_modules(model):  # STE gradients never reach a pruned weight
            assert int(torch.count_nonzero(module.weight.grad[~get_mask(module)])) == 0
        optimizer.step()
        optimizer.zero_grad()
        observer_step_(model, QATConfig(freeze_observers_after=None), step + 1)
        assert masked_nonzeros(model) == 0, f"a masked weight regrew at step {step}"
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert not torch.equal(start["bert.encoder.layer.0.intermediate.dense.weight"],
                           model.bert.encoder.layer[0].intermediate.dense.weight)
    sparsifier.check("after QAT")
    freeze_observers_(model)
    for name, (q, scale, zp) in quantized_weights(model).items():  # symmetric int8: 0 -> 0
        assert q.dtype == torch.int8 and int(q.abs().max()) <= 127 and int(zp.abs().sum()) == 0
        module = model.get_submodule(name)
        if isinstance(module, MaskedQATLinear):
            assert int(torch.count_nonzero(q[~module.weight_mask])) == 0
            assert scale.numel() == (q.shape[0] if granularity == "per_channel" else 1)


def test_observers_freeze_after_configured_step():
    model, sparsifier = pruned_classifier()
    cfg = QATConfig(freeze_observers_after=3, act_observer_momentum=0.5)
    prepare_qat_(model, cfg, sparsifier)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    act = model.bert.encoder.layer[0].attention.self.query.input_fake_quant
    scales = []
    for step in range(6):
        model(**batch(seed=step)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        frozen = observer_step_(model, cfg, step + 1)
        assert frozen == (step + 1 >= 3)
        scales.append(float(act.scale))
    assert scales[0] != scales[1]  # observing: the moving average moves
    assert scales[2] == scales[3] == scales[4] == scales[5]  # frozen at step 3


def test_qat_state_round_trips_through_safetensors(tmp_path):
    model, sparsifier = pruned_classifier()
    prepare_qat_(model, QATConfig(), sparsifier)
    model(**batch())
    freeze_observers_(model)
    model.eval()
    path = tmp_path / "qat.safetensors"
    st_save_model(model, str(path))

    fresh, fresh_sparsifier = pruned_classifier(seed=5)  # other weights: everything must come from the file
    prepare_qat_(fresh, QATConfig(), fresh_sparsifier)
    st_load_model(fresh, str(path))
    fresh.eval()
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    ids = batch()["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, fresh(input_ids=ids).logits)


def test_qat_folder_saved_with_save_model_loads_back(tmp_path):
    model, sparsifier = pruned_classifier()
    cfg = QATConfig(weight_granularity="per_tensor")
    names = prepare_qat_(model, cfg, sparsifier)
    model(**batch())
    freeze_observers_(model)
    model.eval()
    save_model(model, tmp_path / "qat", sparsifier=sparsifier,
               extra_files={QAT_FILE: json.dumps(qat_metadata(cfg, names))})
    loaded, loaded_sparsifier, loaded_cfg = load_qat_model(tmp_path / "qat")
    assert loaded_cfg == cfg and loaded_sparsifier is not None
    loaded_sparsifier.check("loaded QAT folder")
    ids = batch()["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded.eval()(input_ids=ids).logits)


def test_qat_config_round_trips_and_rejects_typos():
    cfg = QATConfig(weight_granularity="per_tensor", freeze_observers_after=10, embeddings=False)
    assert QATConfig.model_validate(cfg.model_dump(mode="json")) == cfg
    with pytest.raises(ValueError, match="extra"):
        QATConfig.model_validate({"weight_granularty": "per_tensor"})
    with pytest.raises(ValueError):
        QATConfig(act_observer_momentum=0.0)
