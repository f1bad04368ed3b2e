"""Elastic weight consolidation (Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks",
PNAS 2017, Eq. 3): a quadratic anchor to the source weights, each weight weighted by how much the source model's
likelihood depends on it.

    Ω(θ) = λ/2 · Σ_i F_i (θ_i − θ_src,i)²,   F_i = E_x[(∂ log p_θ(x)/∂θ_i)²] at θ = θ_src   (diagonal Fisher)

For a diffusion model log p_θ(x) is out of reach; its variational bound is not, and the per-sample training loss
ℓ(x) = L_simple + L_vb is that bound up to weights and constants, so −ℓ serves as the log-likelihood surrogate,
as in the few-shot adaptation of generative models by EWC (Li et al., "Few-shot Image Generation with Elastic Weight
Consolidation", NeurIPS 2020, for GANs). The scale of F then depends on ℓ's normalisation (a mean over pixels),
which λ absorbs: F is not normalised, so useful λ are large. On the shipped SynthFaces source (demo32 U-Net, 64
samples) the entries of F average 4e-7 (median 7e-8, largest 4e-4), so λ·F reaches L2-SP's α of 0.1–10 at λ of
roughly 1e5–1e7.

Choices, each deterministic from ``config.seed``:
- F is estimated on the source model's own samples (:func:`~sdft_lite.rivals.prior_preservation.source_samples`,
  the first ``fisher_samples`` of the prior set's seeds), not on the target images: EWC's Fisher belongs to the old
  task, whose data (the source's training set) a fine-tuner does not have; the source's samples stand in for it,
  as Li et al. estimate the Fisher of the source generator from images it generates.
- one (t, ε) per sample, drawn from a CPU generator, and the squared gradient of that sample's loss
  (F = mean_n g_n², the empirical Fisher of Kirkpatrick et al.'s estimate), the model in eval mode (no dropout);
- F and θ_src are computed once when the run is set up, before any resume, and kept on the device.

EWC anchors the full weights, so it is refused with LoRA (as L2-SP is).
"""
from __future__ import annotations

import torch

from ..adapters import trainable_parameters
from ..diffusion import training_losses
from ..schedule import Schedule
from ..weighting import WeightingFn
from .prior_preservation import SAMPLE_SEED, source_samples

FISHER_STREAM = 31_337    # (t, ε) of the Fisher samples: a CPU generator seeded with config.seed + FISHER_STREAM


def diagonal_fisher(model: torch.nn.Module, images: torch.Tensor, schedule: Schedule, generator: torch.Generator,
                    mse_weighting: WeightingFn) -> list[torch.Tensor]:
    """F_i = mean_n (∂ℓ(x_n; t_n, ε_n)/∂θ_i)² over the trainable parameters, one (t_n, ε_n) per image, drawn from
    ``generator`` (on the CPU). images: [N, C, H, W] in [−1, 1]. The model's mode is restored afterwards."""
    params = trainable_parameters(model)
    fisher = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    training = model.training
    model.eval()
    device = params[0].device
    for x0 in images:
        t = torch.randint(0, len(schedule), (1,), generator=generator)
        noise = torch.randn((1, *x0.shape), generator=generator)
        loss = training_losses(model, schedule, x0[None].to(device), t.to(device), noise.to(device),
                               mse_weighting)["loss"].sum()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for f, g in zip(fisher, grads):
            if g is not None:
                f += g.float() ** 2
    model.train(training)
    return [f / len(images) for f in fisher]


def ewc_penalty(params: list[torch.Tensor], anchors: list[torch.Tensor], fisher: list[torch.Tensor]) -> torch.Tensor:
    """½ Σ_i F_i (θ_i − θ_src,i)² over matching lists of tensors (float32 sums); a scalar."""
    return 0.5 * sum((f * (p.float() - a.float()) ** 2).sum() for p, a, f in zip(params, anchors, fisher))


class EWC:
    """λ/2 Σ_i F_i (θ_i − θ_src,i)²: ``{"ewc": scalar}``. θ_src is a copy of the weights taken at setup."""

    def __init__(self, weight: float, params: list[torch.nn.Parameter], fisher: list[torch.Tensor]):
        self.weight = weight
        self.params = params                                  # the student's own Parameters (updated in place)
        self.anchors = [p.detach().clone() for p in params]   # θ_src
        self.fisher = fisher

    def __call__(self, student, x0, t, noise, generator, step, micro) -> dict[str, torch.Tensor]:
        return {"ewc": self.weight * ewc_penalty(self.params, self.anchors, self.fisher)}


def build(config, student, teacher, schedule, device, rank, world) -> EWC:
    """The Fisher of ``student`` (still the source model) on its own samples, then the regulariser."""
    rival = config.rival
    samples = source_samples(student, rival.fisher_samples, config.unet.image_size, rival.source_steps,
                             config.seed + SAMPLE_SEED, device, config.noise_schedule, config.unet.in_channels)
    images = samples.batch(torch.arange(len(samples)))
    generator = torch.Generator().manual_seed(config.seed + FISHER_STREAM)
    fisher = diagonal_fisher(student, images, schedule, generator, config.loss.mse_weighting)
    return EWC(rival.weight, trainable_parameters(student), fisher)
