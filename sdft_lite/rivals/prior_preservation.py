"""Prior preservation (Ruiz et al., "DreamBooth: Fine Tuning Text-to-Image Diffusion Models for Subject-Driven
Generation", CVPR 2023, Eq. 2), unconditional: train on the target images and, with weight w, on images the source
model sampled once before fine-tuning.

    L = L_diff(target batch) + w · L_diff(prior batch),   prior images x_pr ~ the source model, drawn once

DreamBooth's Eq. 2 adds λ·w_t'·‖x̂_θ(α_t' x_pr + σ_t' ε', c_pr) − x_pr‖² to the instance term: the same diffusion
loss, on the class images, with its own t' and ε'. Without prompts the class prior is simply the source model.

What we follow, from diffusers' ``examples/dreambooth/train_dreambooth.py`` (``--with_prior_preservation
--prior_loss_weight --num_class_images``; read at commit 000280f5):
- the class images are sampled once, before training, by the pretrained model (``--num_class_images``, default
  100): here ``num_prior`` images by deterministic DDIM (η = 0) from fixed seeds (:func:`source_samples`),
  rounded to 8 bits as a saved image would be and kept in memory for the run;
- every instance image is paired with a class image (``collate_fn`` appends the class images to the batch), so the
  prior batch is as large as the target batch;
- t and ε are drawn for every image of the doubled batch, which goes through the U-Net once and is then split in
  two (``torch.chunk``); the prior term is the mean MSE over the prior half times ``--prior_loss_weight`` (default
  1), added to the instance loss. This is what :class:`PriorPreservation` returns: w × the per-sample diffusion loss
  of each prior image, [B], which the trainer averages as it averages the target terms.

Choices where this codebase differs: the prior loss is the run's full per-sample diffusion loss (L_simple with the
run's ``mse_weighting``, plus L_vb for a learned-variance U-Net), the same loss the target images get, as in Eq. 2
(diffusers' ``--snr_gamma`` weights only the instance half). The prior batch runs as a second forward pass, not
concatenated: the U-Net's GroupNorm works per image, so the loss is the same; only the dropout masks come from a
different stretch of the stream. Prior images get the trainer's random horizontal flip, as target images do (both
are flipped alike; diffusers flips neither by default). A step's prior images are an epoch-wise permutation of the
prior set (``data.batch_indices`` with its own seed), as the target images are; diffusers pairs instance i with
class image i mod N in a shuffled loader. In an SDFT run the prior images get no distillation term.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import ImageSet, batch_indices, random_flip
from ..diffusion import training_losses
from ..sample import generate, to_uint8
from ..schedule import Schedule
from ..weighting import WeightingFn

SAMPLE_SEED = 54_321      # source samples start from x_T seeded by (config.seed + SAMPLE_SEED, image index)
PRIOR_STREAM = 7_777      # prior batches: data.batch_indices with seed config.seed + PRIOR_STREAM


def source_samples(model: torch.nn.Module, num: int, image_size: int, steps: str, seed: int,
                   device: torch.device, schedule_name: str = "linear", channels: int = 3) -> ImageSet:
    """``num`` samples of ``model`` by deterministic DDIM (η = 0) from the fixed per-image seeds of
    :func:`sdft_lite.sample.generate`, as uint8 [num, C, S, S] (rounded as a saved PNG would be). The model's
    train/eval mode is restored afterwards."""
    training = model.training
    images = generate(model, num, image_size, steps, seed=seed, batch_size=min(num, 64), device=device,
                      schedule_name=schedule_name, channels=channels)
    model.train(training)
    return ImageSet(torch.from_numpy(to_uint8(images)).permute(0, 3, 1, 2).contiguous(), files=[])


@dataclass
class PriorPreservation:
    """w × the diffusion loss on a prior batch as large as the micro-batch: ``{"prior": [B]}``."""

    weight: float
    images: ImageSet              # the source model's samples, drawn once
    schedule: Schedule
    mse_weighting: WeightingFn
    batch_size: int               # the run's global batch, grad_accum, world and rank: the prior batch is laid out
    grad_accum: int               # over micro-batches and GPUs exactly as the target batch is
    world: int
    rank: int
    seed: int

    def indices(self, step: int, micro: int, per_micro: int) -> torch.Tensor:
        """The prior images of this rank's micro-batch ``micro`` of ``step``: a pure function of those numbers."""
        index = batch_indices(len(self.images), self.batch_size, step, self.seed)
        return index.reshape(self.grad_accum, self.world, per_micro)[micro, self.rank]

    def __call__(self, student, x0, t, noise, generator, step, micro) -> dict[str, torch.Tensor]:
        per_micro = x0.shape[0]
        x_prior = random_flip(self.images.batch(self.indices(step, micro, per_micro), x0.device), generator)
        t_prior = torch.randint(0, len(self.schedule), (per_micro,), generator=generator,
                                device=generator.device).to(x0.device)
        noise_prior = torch.randn(x_prior.shape, generator=generator, device=generator.device).to(x0.device)
        terms = training_losses(student, self.schedule, x_prior, t_prior, noise_prior, self.mse_weighting)
        return {"prior": self.weight * terms["loss"]}


def build(config, student, teacher, schedule, device, rank, world) -> PriorPreservation:
    """Sample the prior set from ``student`` (still the source model) and return the regulariser."""
    rival = config.rival
    images = source_samples(student, rival.num_prior, config.unet.image_size, rival.source_steps,
                            config.seed + SAMPLE_SEED, device, config.noise_schedule, config.unet.in_channels)
    return PriorPreservation(rival.weight, images, schedule, config.loss.mse_weighting, config.batch_size,
                             config.grad_accum, world, rank, config.seed + PRIOR_STREAM)
