"""LoRA adapters for the ADM U-Net (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022).

A wrapped layer computes y = W x + b + (alpha / r) * up(down(dropout(x))), eq. (3) of the paper with ΔW = B A,
B = `lora_up` zero-initialised, A = `lora_down` random. For a k x k convolution, `down` is a k x k convolution to
r channels with the layer's stride, padding and dilation, and `up` a 1 x 1 convolution from r channels, as peft and
LyCORIS do; the pair equals one convolution with ΔW = (up [out, r] @ down [r, in*k*k]).reshape(W.shape), so the
update has rank <= r in the [out, in*k*k] view and merges into W exactly (`merge_lora`).

Who calls what: the trainer builds the U-Net, loads its weights, calls `add_lora(model, config)` (before
torch.compile and DDP), optimises `trainable_parameters(model)`, keeps its EMA over the same list and saves
`trainable_state_dict(model)`. Without adapters these are all parameters and the full state dict, so one code path
serves both. The EMA copy is a `copy.deepcopy` with requires_grad off, so what is trainable is found by structure
(the `lora_down`/`lora_up` tensors), never by `requires_grad`. torch.compile of an adapted model: checked on the
CPU (compiled vs eager max |diff| 1.5e-6, no gradient on base weights).

Why not peft (0.21.2, tried on this U-Net on 2026-12-02 with torch 2.14.1): its LoRA layers handle nn.Conv2d (3x3
and 1x1, the same k x k down / 1 x 1 up), nn.Conv1d and nn.Linear; given the same A and B its outputs equal ours bit
for bit; base weights get no gradient; deepcopy, weights_only loading and torch.compile work. But (1) its wrapper is
not an nn.Conv2d, and `EmbedSequential` tells the first input conv from the (h, emb) blocks by
`isinstance(layer, nn.Conv2d)`, so wrapping `input_blocks.0.0` raises "Conv2d.forward() takes 2 positional
arguments but 3 were given" unless unet.py changes; (2) it renames every wrapped weight to `*.base_layer.weight`,
so an adapted model loses guided-diffusion's key names; (3) it imports transformers and accelerate at import time,
and transformers 5.24 needs tokenizers (a compiled extension): four packages the project does not use otherwise,
152 MB installed, 6-9 s more to import on our 2-core CPU (torch alone: 3 s). Here each wrapped layer subclasses
its own layer type and keeps `weight` and `bias` where they were, so isinstance checks and the base model's keys
are untouched, and the mechanism fits on a page.

Shapes: Linear down [r, in], up [out, r]; ConvNd down [r, in, *k], up [out, r, 1, ...].
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointMismatchError
from .unet import AttentionBlock

LORA_TARGETS = ("conv", "attention", "linear")  # layer kinds: Conv1d/2d, the attention's qkv/proj_out, Linear


@dataclass(frozen=True)
class LoRAConfig:
    """LoRA (Hu et al., ICLR 2022): rank r (0 = off), scaling alpha / r (alpha defaults to r, scaling 1, as in peft).

    `targets`: which layer kinds get adapters: "conv" (every nn.Conv2d/nn.Conv1d outside attention: the ResBlocks'
    3x3 convs and 1x1 skips, up/down-sampling convs, the input and output convs), "attention" (the attention
    blocks' qkv and proj_out, 1x1 nn.Conv1d), "linear" (nn.Linear: the time embedding and the ResBlocks'
    embedding projections). A comma string ("conv,attention") is accepted, for command lines.
    `dropout` applies to the adapter's input only, as in the paper's code and peft.
    On a k x k convolution the update is a k x k down conv to r channels, then a 1 x 1 up conv (peft, LyCORIS):
    ΔW of rank <= r in the [out, in*k*k] view. Every layer gets rank r, also where r exceeds min(out, in*k*k) (the
    6-channel output conv at r = 8), as in peft.
    """

    rank: int = 0
    alpha: float | None = None  # None -> rank
    dropout: float = 0.0
    targets: tuple[str, ...] | str = LORA_TARGETS

    def __post_init__(self):
        targets = self.targets.split(",") if isinstance(self.targets, str) else self.targets
        targets = tuple(t.strip() for t in targets if t.strip())
        unknown = sorted(set(targets) - set(LORA_TARGETS))
        if unknown:
            raise ValueError(f"unknown LoRA targets {unknown}; choose from {LORA_TARGETS}")
        if self.rank < 0 or int(self.rank) != self.rank:
            raise ValueError(f"LoRA rank must be a non-negative integer (0 = off), got {self.rank!r}")
        if self.rank and not targets:
            raise ValueError("LoRA with rank > 0 needs at least one target")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if self.rank and self.alpha is not None and self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be positive, got {self.alpha}")
        object.__setattr__(self, "rank", int(self.rank))
        object.__setattr__(self, "alpha", None if self.alpha is None else float(self.alpha))
        object.__setattr__(self, "targets", targets)

    @property
    def effective_alpha(self) -> float:
        """alpha, or the rank when alpha is None (so that changing the rank keeps the scaling at 1)."""
        return float(self.rank if self.alpha is None else self.alpha)

    @property
    def scaling(self) -> float:
        return self.effective_alpha / self.rank if self.rank else 0.0


# ---------------------------------------------------------------------------------------------------------------
# The wrapped layers


class LoRALayer:
    """Mixed into a subclass of nn.Linear / nn.Conv1d / nn.Conv2d: y = layer(x) + scaling * up(down(dropout(x)))."""

    lora_down: nn.Parameter
    lora_up: nn.Parameter

    @classmethod
    def wrap(cls, layer: nn.Module, rank: int, alpha: float, dropout: float) -> "LoRALayer":
        """A LoRA layer sharing `layer`'s weight and bias Parameters (same names: `weight`, `bias`)."""
        with torch.device("meta"):  # no memory and no init for weights that are replaced at once
            wrapped = cls(*_constructor_args(layer))
        wrapped.weight, wrapped.bias = layer.weight, layer.bias
        wrapped.train(layer.training)
        w = layer.weight
        wrapped.lora_down = nn.Parameter(torch.empty(rank, *w.shape[1:], device=w.device, dtype=w.dtype))
        wrapped.lora_up = nn.Parameter(torch.zeros(w.shape[0], rank, *[1] * (w.dim() - 2),
                                                   device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(wrapped.lora_down, a=math.sqrt(5))  # nn.Linear/ConvNd's default init, as peft
        wrapped.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        wrapped.scaling = alpha / rank
        return wrapped

    def lora_delta(self) -> torch.Tensor:
        """ΔW = scaling * up @ down shaped like `weight`, in float64; rank <= r in the [out, in*k*k] view."""
        delta = self.lora_up.double().flatten(1) @ self.lora_down.double().flatten(1)
        return self.scaling * delta.reshape(self.weight.shape)

    def merged(self) -> nn.Module:
        """A plain layer of the base type whose weight is W + ΔW (rounded once to W's dtype)."""
        base_type = next(c for c in type(self).__mro__ if c in _LORA_TYPES)
        with torch.device("meta"):
            plain = base_type(*_constructor_args(self))
        with torch.no_grad():
            plain.weight = nn.Parameter((self.weight.double() + self.lora_delta()).to(self.weight.dtype))
        plain.bias = None if self.bias is None else nn.Parameter(self.bias.detach().clone())
        return plain.train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.scaling * self._low_rank(self.lora_dropout(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lora_rank={self.lora_down.shape[0]}, lora_scaling={self.scaling:g}"


class LoRALinear(LoRALayer, nn.Linear):
    def _low_rank(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.lora_down), self.lora_up)


class LoRAConv1d(LoRALayer, nn.Conv1d):
    def _low_rank(self, x: torch.Tensor) -> torch.Tensor:
        """down: a conv like the layer's (kernel, stride, padding) to r channels; up: 1-wide."""
        return F.conv1d(self._conv_forward(x, self.lora_down, None), self.lora_up)


class LoRAConv2d(LoRALayer, nn.Conv2d):
    def _low_rank(self, x: torch.Tensor) -> torch.Tensor:
        """down: a conv like the layer's (k x k, stride, padding) to r channels; up: 1 x 1."""
        return F.conv2d(self._conv_forward(x, self.lora_down, None), self.lora_up)


_LORA_TYPES = {nn.Linear: LoRALinear, nn.Conv1d: LoRAConv1d, nn.Conv2d: LoRAConv2d}


def _constructor_args(layer: nn.Module) -> tuple:
    """The arguments that rebuild `layer`'s type with the same shapes and hyperparameters."""
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features, layer.bias is not None
    if layer.groups != 1:
        raise ValueError(f"LoRA on grouped convolutions is not supported ({layer})")
    return (layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
            layer.groups, layer.bias is not None, layer.padding_mode)


# ---------------------------------------------------------------------------------------------------------------
# Adding, listing, saving and merging


def _unwrap(model: nn.Module) -> nn.Module:
    """The module under torch.compile's `_orig_mod` and DDP's `module` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _kind(parent: nn.Module, layer: nn.Module) -> str | None:
    """'attention', 'conv', 'linear' or None (not a layer LoRA wraps); only exact nn types, never subclasses."""
    if type(layer) not in _LORA_TYPES:
        return None
    if isinstance(parent, AttentionBlock):
        return "attention"
    return "linear" if type(layer) is nn.Linear else "conv"


def add_lora(model: nn.Module, config: LoRAConfig) -> nn.Module:
    """Wrap the target layers in place (ΔW = 0 at step 0: the outputs are unchanged) and freeze everything else.

    rank 0 returns the model untouched. Call before torch.compile and DDP; a model with adapters is refused.
    """
    if config.rank == 0:
        return model
    if model is not _unwrap(model):
        raise ValueError("add LoRA before torch.compile / DistributedDataParallel wrap the model")
    if has_lora(model):
        raise ValueError("this model already has LoRA adapters")
    model.requires_grad_(False)
    targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if _kind(parent, child) in config.targets]
    if not targets:
        raise ValueError(f"no layer of the kinds {config.targets} in {type(model).__name__}")
    for parent, name, child in targets:
        setattr(parent, name, _LORA_TYPES[type(child)].wrap(child, config.rank, config.effective_alpha, config.dropout))
    return model


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALayer) for m in _unwrap(model).modules())


def _adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {f"{name}.{p}" if name else p: getattr(m, p) for name, m in _unwrap(model).named_modules()
            if isinstance(m, LoRALayer) for p in ("lora_down", "lora_up")}


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What the optimiser and the EMA see: the adapters' tensors if the model has any, else all parameters.

    Chosen by structure, not requires_grad, so an EMA copy (requires_grad off) lists the matching tensors in the
    same order.
    """
    if has_lora(model):
        return list(_adapter_parameters(model).values())
    return list(_unwrap(model).parameters())


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """What checkpoints hold: the adapter tensors ('<layer>.lora_down', '<layer>.lora_up') with LoRA, else the full
    state dict. Tensors are detached and share memory with the model, as `state_dict()`'s do."""
    if has_lora(model):
        return {k: p.detach() for k, p in _adapter_parameters(model).items()}
    return _unwrap(model).state_dict()


def _mismatch_hint(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    adapter_in_file = any(k.endswith((".lora_down", ".lora_up")) for k in state)
    if has_lora(model) and not adapter_in_file:
        return "this is a full state dict, not a LoRA adapter: load it into the model before add_lora"
    if not has_lora(model) and adapter_in_file:
        return "this is a LoRA adapter: call add_lora(model, config) with the config it was trained with first"
    def ranks(sd: dict[str, torch.Tensor]) -> list[int]:
        return sorted({v.shape[0] for k, v in sd.items() if k.endswith(".lora_down")})
    return (f"was it saved with another LoRAConfig? ranks in the file {ranks(state)}, in the model "
            f"{ranks(trainable_state_dict(model))}; or another U-Net config")


def load_trainable_state_dict(model: nn.Module, state: dict[str, torch.Tensor],
                              source: str = "the trainable state") -> None:
    """Copy `state` (from `trainable_state_dict`) into the model in place, strictly: the same keys and shapes, or
    one CheckpointMismatchError listing what differs. The Parameters stay the same objects (optimisers keep them)."""
    expected = trainable_state_dict(model)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [(k, tuple(v.shape), tuple(state[k].shape)) for k, v in expected.items()
                  if k in state and v.shape != state[k].shape]
    if missing or unexpected or mis_shaped:
        raise CheckpointMismatchError(source, missing, unexpected, mis_shaped, _mismatch_hint(model, state))
    with torch.no_grad():
        for k, v in expected.items():
            v.copy_(state[k])


def merge_lora(model: nn.Module) -> nn.Module:
    """A copy of the model with every LoRA layer replaced by its plain layer with W + ΔW: the same class and key names
    as before `add_lora` (a UNetModel loads with `load_unet` strictly), all parameters trainable. The input is not
    changed; a model without adapters comes back as a plain copy."""
    merged = copy.deepcopy(_unwrap(model))
    layers = [(parent, name, child) for parent in merged.modules() for name, child in parent.named_children()
              if isinstance(child, LoRALayer)]
    for parent, name, child in layers:
        setattr(parent, name, child.merged())
    return merged.requires_grad_(True)
