"""DDPM-PA's pairwise similarity loss (Zhu, Ma, Chen & Yuan, "Few-shot Image Generation with Diffusion Models",
arXiv 2211.03264, 2022; extended as DomainStudio, arXiv 2306.14153): keep the relative distances between the
adapted model's denoised images what they are for the source model.

    s_ij = cos(x̂_0,i, x̂_0,j)  (j ≠ i),   p_i = softmax_j(s_ij)   for the source and for the adapted model
    L_pair = w · 1/(n(n−1)) · Σ_i Σ_{j≠i} p^src_ij (log p^src_ij − log p^ada_ij)

What we follow: the authors' released code, ``training_fewshot_losses`` in
``Unconditional/guided_diffusion/gaussian_diffusion.py`` of github.com/bbzhu-jy16/DomainStudio (commit cc69341),
the unconditional DDPM-PA/DomainStudio trainer (the paper's method section could not be read here; its abstract
describes the loss as preserving the relative pairwise distances between generated samples):
- the features are the x̂_0 that each model predicts from the *same* noisy training batch x_t (the target images,
  each at its own t, as the diffusion loss draws them), unclipped, flattened over C, H, W;
- n = 3 images of the batch are picked at random without replacement (``sim_size = 3``; the released setting trains
  3 images per GPU, so that is the whole per-GPU batch);
- cosine similarities s_ij for j ≠ i, a softmax over j for each anchor i, and torch's ``KLDivLoss()`` applied as
  ``kl_loss(log p^ada, p^src)``: KL(p^src ‖ p^ada) averaged over the n(n−1) entries (the default 'mean'
  reduction), the same direction and reduction as the code of CDC (Ojha et al., CVPR 2021), whose GAN loss DDPM-PA
  carries over to diffusion models; weight ``pair_weight`` (4.0 in their README).

It fits this ADM U-Net as is: the released trainer is improved-diffusion's ADM (learned variance, ε-prediction), the
family of this package's U-Net, and the loss needs nothing of the architecture but x̂_0, which
``diffusion.eps_x0_from_prediction`` gives for ε, v or x0 predictions alike.

Choices and what is left out: the n images are drawn from the micro-batch by its generator (a pure function of
seed, step and rank; the released code uses NumPy's global generator). The adapted model's x̂_0 comes from a
second forward pass over those n images (the released code reuses the forward pass of the diffusion loss: the
same inputs, another dropout mask here); the source model runs frozen in eval mode (an SDFT run's teacher, else a
frozen copy of the student taken at setup). DomainStudio adds two high-frequency terms, a pairwise loss on the Haar
wavelet high-frequency parts of x̂_0 (``hf_pair_weight``) and an MSE between those parts of x̂_0 and of the
training image (``hf_mse_weight``); they are not part of the pairwise similarity loss the first DDPM-PA version
proposes (its abstract names that loss alone) and are not implemented here.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..diffusion import eps_x0_from_prediction, q_sample, raw_output, split_eps
from ..schedule import Schedule


def log_similarity_distributions(x0_hat: torch.Tensor) -> torch.Tensor:
    """log p: [n, n−1], row i = log-softmax over j ≠ i (in order) of cos(x̂_0,i, x̂_0,j). x0_hat: [n, C, H, W]."""
    unit = F.normalize(x0_hat.flatten(1).float(), dim=1, eps=1e-8)
    cosine = unit @ unit.T                                              # [n, n]
    n = cosine.shape[0]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=cosine.device)
    return cosine[off_diagonal].reshape(n, n - 1).log_softmax(dim=1)


def pairwise_similarity_loss(source_x0: torch.Tensor, adapted_x0: torch.Tensor) -> torch.Tensor:
    """KL(p^src ‖ p^ada) averaged over the n(n−1) entries (torch's ``KLDivLoss()`` default); a scalar."""
    log_source = log_similarity_distributions(source_x0)
    log_adapted = log_similarity_distributions(adapted_x0)
    return (log_source.exp() * (log_source - log_adapted)).mean()


class PairwiseSimilarity:
    """w × DDPM-PA's pairwise similarity loss on ``pair_size`` images of each micro-batch: ``{"pairwise": scalar}``."""

    def __init__(self, weight: float, source: torch.nn.Module, schedule: Schedule, prediction: str,
                 pair_size: int):
        self.weight, self.source, self.schedule = weight, source, schedule
        self.prediction, self.pair_size = prediction, pair_size

    def predict_x0(self, model: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        pred, _ = split_eps(raw_output(model, x_t, self.schedule, t), x_t.shape[1])
        return eps_x0_from_prediction(self.prediction, self.schedule, pred.float(), x_t, t)[1]

    def __call__(self, student, x0, t, noise, generator, step, micro) -> dict[str, torch.Tensor]:
        n = self.pair_size or x0.shape[0]
        pick = torch.randperm(x0.shape[0], generator=generator, device=generator.device)[:n].to(x0.device)
        x_t = q_sample(self.schedule, x0[pick], t[pick], noise[pick])
        adapted = self.predict_x0(student, x_t, t[pick])
        with torch.no_grad():
            source = self.predict_x0(self.source, x_t, t[pick])
        return {"pairwise": self.weight * pairwise_similarity_loss(source, adapted)}


def build(config, student, teacher, schedule, device, rank, world) -> PairwiseSimilarity:
    """The SDFT teacher as the source model, else a frozen copy of ``student`` (still the source model)."""
    per_micro = config.batch_size // (world * config.grad_accum)
    n = config.rival.pair_size or per_micro
    if not 2 <= n <= per_micro:
        raise ValueError(f"the pairwise rival compares {n} images of each micro-batch of {per_micro}: use a "
                         f"--rival-pair-size between 2 and the micro-batch (or 0 for all of it)")
    source = teacher if teacher is not None else copy.deepcopy(student).eval().requires_grad_(False)
    return PairwiseSimilarity(config.rival.weight, source, schedule, config.unet.prediction, config.rival.pair_size)
