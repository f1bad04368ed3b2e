"""L2-SP (Li, Grandvalet & Davoine, "Explicit Inductive Bias for Transfer Learning with Convolutional Networks",
ICML 2018): weight decay towards the starting point, the source model, instead of towards zero.

    Ω(θ) = α/2 · ‖θ − θ_src‖²,   summed over every fine-tuned weight (all the U-Net's parameters)

The paper's penalty is α/2·‖w_S − w_S⁰‖² on the weights shared with the source network plus β/2·‖w_S̄‖² (plain
weight decay) on the layers that are new in the target network, e.g. a new classifier. Fine-tuning a diffusion
model adds no layer (the target network *is* the source network), so only the α term applies, with its 1/2, as in
the Transfer-Learning-Library's ``SPRegularization`` (``tllib/regularization/delta.py``: 0.5·‖w − w₀‖² over every
parameter of the source model). Every parameter here means weights, biases and GroupNorm scales alike, as there.

L2-SP anchors the full weights, so it is refused with LoRA (:data:`sdft_lite.rivals.ANCHORS_WEIGHTS`): there it
would anchor the adapters' own random initialisation, which is not the method. The penalty is one scalar per
step, added to every micro-batch's loss once (the trainer divides each micro-batch's loss by grad_accum, so a
step counts it once); the run's AdamW weight decay (0 in every preset) still applies on top.
"""
from __future__ import annotations

import torch

from ..adapters import trainable_parameters


def l2sp_penalty(params: list[torch.Tensor], anchors: list[torch.Tensor]) -> torch.Tensor:
    """½ Σ_i ‖θ_i − θ_src,i‖² over matching lists of tensors (float32 sums); a scalar."""
    return 0.5 * sum(((p.float() - a.float()) ** 2).sum() for p, a in zip(params, anchors))


class L2SP:
    """α/2 ‖θ − θ_src‖²: ``{"l2sp": scalar}``. θ_src is a copy of the weights taken when the run is set up."""

    def __init__(self, weight: float, params: list[torch.nn.Parameter]):
        self.weight = weight
        self.params = params                                  # the student's own Parameters (updated in place)
        self.anchors = [p.detach().clone() for p in params]   # θ_src

    def __call__(self, student, x0, t, noise, generator, step, micro) -> dict[str, torch.Tensor]:
        return {"l2sp": self.weight * l2sp_penalty(self.params, self.anchors)}


def build(config, student, teacher, schedule, device, rank, world) -> L2SP:
    """Anchor the student's weights as they are now: the source model's."""
    return L2SP(config.rival.weight, trainable_parameters(student))
