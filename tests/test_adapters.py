"""LoRA (`sdft_lite.adapters`): unchanged at step 0, only adapters train, exact merge, rank <= r, small files.

The tiny U-Net with its zero-initialised layers re-drawn, so that every weight counts; adapters' up-projections are
re-drawn too where a test needs a non-zero update.
Tolerances:
- step 0: outputs equal to the base model's bit for bit (torch.equal). up = 0 exactly, so the branch adds exact
  zeros to the base layer's own, unchanged computation.
- merged vs unmerged, fp32: max |diff| <= 1e-5 * max(1, max |output|) (measured 1.9e-6 on outputs up to 1.8): one
  conv with W + ΔW sums in another order than W x + up(down(x)).
- rank: ΔW = (merged W) - W in float64 has no singular value above 1e-4 * its largest beyond the r-th. The fp32
  rounding of W + ΔW leaves the others at <= 1.5e-7 of the largest, the r-th is >= 0.37 of it (measured, r = 3).
- bit for bit: base weights after optimiser steps; the merged model reloaded by `load_unet` (same weights, same code).
"""
import copy
import io

import pytest
import torch
from torch import nn

from helpers import randomise_zero_init
from sdft_lite.adapters import (LoRAConfig, LoRALayer, add_lora, has_lora, load_trainable_state_dict, merge_lora,
                                trainable_parameters, trainable_state_dict)
from sdft_lite.checkpoint import CheckpointMismatchError, load_unet, save_atomic
from sdft_lite.unet import AttentionBlock, UNetConfig, UNetModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RELATIVE_TOL = 1e-5
RANK_RTOL = 1e-4
CONFIG = UNetConfig.tiny()
# The tiny U-Net's layers by LoRA kind: 22 3x3 + 5 1x1 Conv2d; 4 attention blocks x (qkv, proj_out); 12 Linear.
LAYERS_BY_KIND = {"conv": 27, "attention": 8, "linear": 12}


def base_model(seed: int = 0) -> UNetModel:
    """The tiny U-Net with every parameter random (zero-initialised convs and GroupNorm affines re-drawn)."""
    torch.manual_seed(seed)
    return randomise_zero_init(UNetModel(CONFIG), seed)


def adapted_model(rank: int = 4, seed: int = 0, redraw_up: bool = True, **lora) -> UNetModel:
    model = add_lora(base_model(seed), LoRAConfig(rank=rank, **lora))
    if redraw_up:
        torch.manual_seed(seed + 1)
        for layer in lora_layers(model).values():
            nn.init.normal_(layer.lora_up, std=0.05)
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALayer]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALayer)}


def inputs(seed: int = 0, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 1000, (batch,), generator=g)


@torch.no_grad()
def outputs(model: nn.Module, seed: int = 0) -> torch.Tensor:
    return model.eval()(*inputs(seed))


def file_bytes(state: dict) -> int:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes


def test_config_defaults_and_checks():
    config = LoRAConfig(rank=8)
    assert (config.effective_alpha, config.scaling, config.targets) == (8.0, 1.0, ("conv", "attention", "linear"))
    assert LoRAConfig(rank=4, alpha=16, targets="attention, linear").targets == ("attention", "linear")
    assert LoRAConfig(rank=4, alpha=16).scaling == 4.0
    assert LoRAConfig().rank == 0 and LoRAConfig().scaling == 0.0
    for bad in (dict(rank=-1), dict(rank=2.5), dict(rank=4, targets="convs"), dict(rank=4, targets=""),
                dict(rank=4, dropout=1.0), dict(rank=4, alpha=0.0)):
        with pytest.raises(ValueError):
            LoRAConfig(**bad)


def test_zero_initialised_adapter_leaves_outputs_unchanged():
    expected = outputs(base_model())
    model = add_lora(base_model(), LoRAConfig(rank=4))
    assert torch.equal(outputs(model), expected)
    layers = lora_layers(model)
    assert len(layers) == sum(LAYERS_BY_KIND.values())
    assert all(not layer.lora_up.any() for layer in layers.values())
    # The base keys are guided-diffusion's, unchanged: a base state dict loads with only the adapters missing.
    plain_keys = list(UNetModel(CONFIG).state_dict())
    assert [k for k in model.state_dict() if ".lora_" not in k] == plain_keys
    missing, unexpected = model.load_state_dict(base_model().state_dict(), strict=False)
    assert unexpected == [] and sorted(missing) == sorted(trainable_state_dict(model))


@pytest.mark.parametrize("kind", sorted(LAYERS_BY_KIND))
def test_targets_pick_layer_kinds(kind):
    model = add_lora(base_model(), LoRAConfig(rank=2, targets=(kind,)))
    parents = {name: m for name, m in model.named_modules()}
    wrapped = lora_layers(model)
    assert len(wrapped) == LAYERS_BY_KIND[kind]
    in_attention = [isinstance(parents[name.rsplit(".", 1)[0]], AttentionBlock) for name in wrapped]
    assert all(in_attention) if kind == "attention" else not any(in_attention)
    expected_type = {"conv": nn.Conv2d, "attention": nn.Conv1d, "linear": nn.Linear}[kind]
    assert all(isinstance(m, expected_type) for m in wrapped.values())  # isinstance checks still hold


def test_rank_zero_and_plain_models_train_everything():
    model = base_model()
    assert add_lora(model, LoRAConfig(rank=0)) is model and not has_lora(model)
    assert all(p.requires_grad for p in model.parameters())
    assert [id(p) for p in trainable_parameters(model)] == [id(p) for p in model.parameters()]
    state = trainable_state_dict(model)
    assert list(state) == list(model.state_dict())
    other = base_model(seed=1)
    load_trainable_state_dict(other, {k: v.clone() for k, v in state.items()})
    assert torch.equal(outputs(other), outputs(model))


def test_optimiser_steps_change_only_the_adapters():
    model = adapted_model(rank=4, redraw_up=False, dropout=0.1)
    base_before = {k: v.clone() for k, v in model.state_dict().items() if ".lora_" not in k}
    adapters_before = {k: v.clone() for k, v in trainable_state_dict(model).items()}
    out_before = outputs(model)
    params = trainable_parameters(model)
    assert {id(p) for p in params} == {id(p) for p in model.parameters() if p.requires_grad}
    optimiser = torch.optim.AdamW(params, lr=1e-2)
    model.train()
    for step in range(3):
        x, t = inputs(seed=10 + step)
        loss = (model(x, t) - torch.randn(2, 6, 32, 32)).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert all(p.grad is None for name, p in model.named_parameters() if ".lora_" not in name)
    assert all(torch.equal(v, base_before[k]) for k, v in model.state_dict().items() if ".lora_" not in k)
    changed = [k for k, v in trainable_state_dict(model).items() if not torch.equal(v, adapters_before[k])]
    assert len(changed) == len(adapters_before)  # every up and down tensor moved (down gets gradient after step 1)
    assert not torch.allclose(outputs(model), out_before, atol=1e-4)


def test_merged_outputs_match_unmerged():
    model = adapted_model(rank=4, alpha=8.0)  # scaling 2, so a merge that forgot it would show
    expected = outputs(model)
    merged = merge_lora(model)
    assert type(merged) is UNetModel and not has_lora(merged) and has_lora(model)  # the input keeps its adapters
    assert list(merged.state_dict()) == list(UNetModel(CONFIG).state_dict())
    assert all(p.requires_grad for p in merged.parameters())
    got = outputs(merged)
    max_diff = (got - expected).abs().max().item()
    assert max_diff <= RELATIVE_TOL * max(1.0, expected.abs().max().item()), max_diff
    assert not torch.allclose(expected, outputs(base_model()), atol=1e-3)  # the update is not negligible


def test_merged_update_has_rank_at_most_r():
    rank = 3
    model = adapted_model(rank=rank)
    base = base_model().state_dict()
    merged = merge_lora(model).state_dict()
    for name, layer in lora_layers(model).items():
        delta = (merged[f"{name}.weight"].double() - base[f"{name}.weight"].double()).flatten(1)  # [out, in*k*k]
        singular = torch.linalg.svdvals(delta)
        assert singular[0] > 0, name
        assert (singular > RANK_RTOL * singular[0]).sum() <= rank, (name, singular[:rank + 2])
        exact = torch.linalg.matrix_rank(layer.lora_delta().flatten(1)).item()
        assert exact == min(rank, *delta.shape), name


def test_adapter_checkpoint_is_small():
    model = adapted_model(rank=4, redraw_up=False)
    adapter, full = trainable_state_dict(model), merge_lora(model).state_dict()
    adapter_params = sum(v.numel() for v in adapter.values())
    full_params = sum(v.numel() for v in full.values())
    assert (adapter_params, full_params) == (67_844, 828_358)
    ratio = adapter_params / full_params  # 8.2% at rank 4 on the tiny U-Net (32-64 channels)
    assert ratio < 0.10
    adapter_bytes, full_bytes = file_bytes(adapter), file_bytes(full)  # measured 301,193 and 3,366,367
    assert adapter_bytes < 1.25 * ratio * full_bytes  # fp32 data plus per-tensor pickle records (94 vs 144 tensors)
    assert 4 * adapter_params < adapter_bytes < 4 * adapter_params + 1_000 * len(adapter)


def test_adapter_state_round_trips_with_weights_only(tmp_path):
    model = adapted_model(rank=4)
    path = save_atomic(trainable_state_dict(model), tmp_path / "adapter.pt")
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert list(state) == list(trainable_state_dict(model))
    other = adapted_model(rank=4, seed=5)
    load_trainable_state_dict(other, state)
    other.load_state_dict(base_model().state_dict(), strict=False)  # the base weights the adapter was trained on
    assert torch.equal(outputs(other), outputs(model))

    with pytest.raises(CheckpointMismatchError, match="ranks in the file"):
        load_trainable_state_dict(adapted_model(rank=2), state)
    with pytest.raises(CheckpointMismatchError, match="call add_lora"):
        load_trainable_state_dict(base_model(), state)
    with pytest.raises(CheckpointMismatchError, match="full state dict"):
        load_trainable_state_dict(adapted_model(rank=4), base_model().state_dict())


def test_merged_model_loads_with_load_unet(tmp_path):
    merged = merge_lora(adapted_model(rank=4))
    path = save_atomic({"model": merged.state_dict(), "unet_config": CONFIG.to_flags()}, tmp_path / "merged.pt")
    loaded = load_unet(path)  # strict: same keys and shapes as a plain UNetModel
    assert torch.equal(outputs(loaded), outputs(merged))


def test_deepcopy_ema_and_foreach_lerp_update_only_adapters():
    model = adapted_model(rank=4)
    ema = copy.deepcopy(model).eval().requires_grad_(False)  # as the trainer keeps its EMA
    ema_base = {k: v.clone() for k, v in ema.state_dict().items() if ".lora_" not in k}
    ema_params, params = trainable_parameters(ema), trainable_parameters(model)
    assert [p.shape for p in ema_params] == [p.shape for p in params] and len(params) == 2 * len(lora_layers(model))
    assert not {id(p) for p in ema_params} & {id(p) for p in params}
    before = [p.detach().clone() for p in ema_params]
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p))
        torch._foreach_lerp_(ema_params, params, 0.5)
    for p, old, new in zip(ema_params, before, params):
        assert torch.allclose(p, (old + new) / 2, atol=1e-6)
    assert all(torch.equal(v, ema_base[k]) for k, v in ema.state_dict().items() if ".lora_" not in k)


def test_wrapped_models_are_unwrapped_and_refused():
    model = adapted_model(rank=2)
    compiled = torch.compile(model)  # lazy: nothing is compiled until it is called
    assert has_lora(compiled) and list(trainable_state_dict(compiled)) == list(trainable_state_dict(model))
    assert [id(p) for p in trainable_parameters(compiled)] == [id(p) for p in trainable_parameters(model)]
    with pytest.raises(ValueError, match="before torch.compile"):
        add_lora(torch.compile(base_model()), LoRAConfig(rank=2))
    with pytest.raises(ValueError, match="already has LoRA"):
        add_lora(model, LoRAConfig(rank=2))
