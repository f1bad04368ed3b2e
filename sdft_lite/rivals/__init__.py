"""SDFT's rivals as regularisers of the trainer: one file per method, each citing what it follows.

- ``prior``: DreamBooth's prior preservation (:mod:`.prior_preservation`), w × the diffusion loss on samples the
  source model drew once;
- ``l2sp``: L2-SP (:mod:`.l2sp`), α/2 · ‖θ − θ_src‖²;
- ``ewc``: EWC (:mod:`.ewc`), λ/2 · Σ_i F_i (θ_i − θ_src,i)² with a diagonal Fisher of the source model;
- ``pairwise``: DDPM-PA's pairwise similarity loss (:mod:`.pairwise_similarity`).

LoRA-only fine-tuning and SDFT + LoRA need nothing here: ``TrainConfig(lora=LoRAConfig(rank=r))`` with mode
naive or sdft.

The seam. :func:`build_regularizer` runs once, when the trainer is set up (before a resume loads any weights), and
returns a :class:`Regularizer` or None. The trainer calls it once per micro-batch, inside the step's autocast, as
``regularizer(student, x0, t, noise, generator, step, micro)``; it returns named terms, each already multiplied
by its weight, per sample ([B]) or one scalar for the batch. The trainer adds every term to the loss and logs it
under its name. ``generator`` is the micro-batch's own generator, just after it drew the flips, t and ε, so any
draw a regulariser makes is, like those, a pure function of (seed, step, micro-batch, rank) and a resumed run
repeats it. ``student`` is the unwrapped module, not its DistributedDataParallel or compiled wrapper (DDP expects
one forward pass of its wrapper per backward); the gradient of every term still reaches the DDP all-reduce
(``tests/test_rivals.py`` runs two gloo processes).

Adding a rival: one file with a ``build(config, student, teacher, schedule, device, rank, world)`` function, one
entry in :data:`BUILDERS` and in :data:`RIVALS`, and the settings it reads in :data:`USES`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

import torch

from ..schedule import space_timesteps
from . import ewc, l2sp, pairwise_similarity, prior_preservation

if TYPE_CHECKING:
    from ..train import TrainConfig

RIVALS = ("none", "prior", "l2sp", "ewc", "pairwise")
# the settings each method reads; the others are reset to their defaults, so two configs that train the same way
# are equal (and share a model-zoo key)
USES = {"none": (), "prior": ("weight", "num_prior", "source_steps"), "l2sp": ("weight",),
        "ewc": ("weight", "fisher_samples", "source_steps"), "pairwise": ("weight", "pair_size")}
# rivals that anchor the weights themselves: with LoRA they would anchor the adapters' random init instead
ANCHORS_WEIGHTS = ("l2sp", "ewc")


@dataclass(frozen=True)
class RivalConfig:
    """Which rival regulariser a fine-tuning run adds to its loss, and its one swept knob, ``weight``.

    ``weight`` is w of DreamBooth's prior term (``prior``), α of L2-SP (``l2sp``), λ of EWC (``ewc``) or the weight
    of DDPM-PA's pairwise similarity loss (``pairwise``). The other settings belong to one method each:
    ``num_prior``: images the source model samples once for ``prior`` (diffusers' ``--num_class_images`` default);
    ``fisher_samples``: source samples the diagonal Fisher of ``ewc`` averages over;
    ``source_steps``: the deterministic DDIM respacing those source samples are drawn with (``prior``, ``ewc``);
    ``pair_size``: images per similarity set of ``pairwise``, drawn from each micro-batch (the released code's 3;
    0 = the whole micro-batch).
    """

    method: str = "none"          # none | prior | l2sp | ewc | pairwise
    weight: float = 0.0
    num_prior: int = 100
    fisher_samples: int = 64
    source_steps: str = "ddim50"
    pair_size: int = 3

    def __post_init__(self):
        if self.method not in RIVALS:
            raise ValueError(f"rival method must be one of {RIVALS}, got {self.method!r}")
        for f in dataclasses.fields(self):
            if f.name != "method" and f.name not in USES[self.method]:
                object.__setattr__(self, f.name, f.default)
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"rival weight must be a finite number >= 0, got {self.weight}")
        if self.num_prior < 1 or self.fisher_samples < 1:
            raise ValueError(f"num_prior and fisher_samples must be at least 1, got {self.num_prior}, "
                             f"{self.fisher_samples}")
        if self.pair_size < 0 or self.pair_size == 1:
            raise ValueError(f"pair_size must be 0 (the whole micro-batch) or at least 2, got {self.pair_size}")
        space_timesteps(1000, self.source_steps)   # a respacing that cannot be read fails here, not at setup
        object.__setattr__(self, "weight", float(self.weight))

    @property
    def active(self) -> bool:
        return self.method != "none"


class Regularizer(Protocol):
    """Called once per micro-batch; returns named terms ([B] or scalar), each already weighted."""

    def __call__(self, student: torch.nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                 generator: torch.Generator, step: int, micro: int) -> dict[str, torch.Tensor]: ...


# method → build(config, student, teacher, schedule, device, rank, world) -> Regularizer
BUILDERS: dict[str, Callable[..., Regularizer]] = {
    "prior": prior_preservation.build, "l2sp": l2sp.build, "ewc": ewc.build, "pairwise": pairwise_similarity.build,
}


def build_regularizer(config: "TrainConfig", student: torch.nn.Module, teacher: torch.nn.Module | None,
                      schedule, device: torch.device, rank: int = 0, world: int = 1) -> Regularizer | None:
    """The run's regulariser, or None for ``config.rival.method == "none"``. ``student``: the model about to be
    fine-tuned, still holding the source weights (so it *is* the source model here); ``teacher``: the frozen
    source of an SDFT run, else None. Everything a rival precomputes (source samples, a Fisher) is a function of
    ``config.seed`` alone, so a resumed run rebuilds it identically."""
    if not config.rival.active:
        return None
    return BUILDERS[config.rival.method](config, student, teacher, schedule, device, rank, world)
