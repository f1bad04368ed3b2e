"""The SDFT loss (Hur et al., WACV 2024, Eq. 6–8).

    L = L_simple + L_vb
        + λ_d   · mean_B[ w_d(t) · ‖ε_src(x_t, t) − ε_trg(x_t, t)‖² ]      (distillation, same x_t and t)
        + λ_aux · mean_B[ w_a(t) · ‖ε_src(ε, t)   − ε_trg(ε, t)‖²   ]      (auxiliary input: the noise ε itself)

x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε is built from the target image x_0; the auxiliary input is *the very same* ε at the
same t. ε_src is the frozen source model (the teacher: no gradient), ε_trg the model being fine-tuned; only
the prediction channels are distilled (for a v- or x0-predicting pair, the same equation in that space: the
paper's future work). ‖·‖² is a mean over C, H, W. w_d and w_a are P2-family weights 1/(k + SNR)^γ with their
own γ (γ_d = 3, γ_aux = 50 for MetFaces), so distillation acts where the noise is large.

:func:`sdft_losses` is the equation. Which auxiliary samples it computes is a seam, ``select_aux``: by default
all of them; :class:`SkipLightAux` leaves out those whose weight λ_aux·w_a(t) is negligible (a speed-up the
trainer applies, exact to that threshold); :class:`ImportanceAux` computes a fixed number of them, drawn by weight
and reweighted, an unbiased estimate of the auxiliary term whose batch shape never changes (so it compiles).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch

from .diffusion import diffusion_terms, mean_flat, q_sample, raw_output, split_eps
from .schedule import Schedule
from .weighting import P2, WeightingFn, weights_at

# (config, schedule, t: [B], generator) → (indices [m] of the auxiliary samples to compute, their multipliers [m]);
# an index may repeat (its terms add up); the generator is the micro-batch's own (None: torch's default)
AuxSelector = Callable[["SDFTConfig", Schedule, torch.Tensor, "torch.Generator | None"],
                       tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class SDFTConfig:
    """Coefficients of the SDFT loss. λ_d = λ_aux = 0 is naive fine-tuning."""

    lambda_distill: float = 0.1
    distill_weighting: WeightingFn = field(default=P2(gamma=3.0))
    lambda_aux: float = 0.1
    aux_weighting: WeightingFn = field(default=P2(gamma=50.0))
    mse_weighting: WeightingFn = field(default=P2(gamma=0.0))   # γ = 0 in SDFT fine-tuning: plain L_simple

    @classmethod
    def metfaces(cls) -> "SDFTConfig":
        """The authors' README values for MetFaces: λ_d 0.1, γ_d 3, λ_aux 0.1, γ_aux 50, k 1."""
        return cls()

    @classmethod
    def aahq(cls) -> "SDFTConfig":
        """AAHQ: (λ_d, γ_d, λ_aux, γ_aux) = (0.1, 3, 0.3, 50), a combination from the authors' notebooks (the
        value behind the paper's AAHQ numbers is not stated)."""
        return cls(lambda_aux=0.3)

    @classmethod
    def naive(cls) -> "SDFTConfig":
        """No distillation: the plain diffusion loss."""
        return cls(lambda_distill=0.0, lambda_aux=0.0)

    @classmethod
    def symmetric(cls, lam: float, **changes) -> "SDFTConfig":
        """λ_d = λ_aux = lam: the book's λ sweep."""
        return cls(**{"lambda_distill": lam, "lambda_aux": lam, **changes})

    @property
    def needs_teacher(self) -> bool:
        return self.lambda_distill > 0 or self.lambda_aux > 0


def every_aux(config: SDFTConfig, schedule: Schedule, t: torch.Tensor,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact equation: every auxiliary sample, multiplier 1 (none when λ_aux = 0)."""
    count = t.shape[0] if config.lambda_aux > 0 else 0
    return torch.arange(count, device=t.device), torch.ones(count, device=t.device)


@dataclass(frozen=True)
class SkipLightAux:
    """Compute only the auxiliary samples with λ_aux·w_a(t) ≥ ``threshold``, topped up with the next-heaviest
    ones to a multiple of ``bucket`` (fewer distinct batch shapes). Every kept sample keeps its true weight, so
    the loss differs from the exact one by less than ``threshold`` per skipped sample × its (bounded) gap."""

    threshold: float = 1e-6
    bucket: int = 4

    def __call__(self, config: SDFTConfig, schedule: Schedule, t: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if config.lambda_aux <= 0:
            return every_aux(config, schedule, t)
        weight = config.lambda_aux * weights_at(config.aux_weighting, schedule, t)
        needed = int((weight >= self.threshold).sum())
        count = min(t.shape[0], -(-needed // self.bucket) * self.bucket)
        keep = torch.sort(torch.argsort(weight, descending=True, stable=True)[:count]).values
        return keep, torch.ones(count, device=t.device)


@dataclass(frozen=True)
class ImportanceAux:
    """An unbiased estimate of the auxiliary term from ``samples`` auxiliary inputs per batch, whatever t is.

    The term is Σ_i a_i g_i with a_i = λ_aux·w_a(t_i) and g_i the student–teacher gap on the pure-noise input i
    (the loss divides by B). Draw m indices with replacement, index i with probability p_i = a_i / A (A = Σ a_i),
    and give each draw the multiplier A / (m·a_i); then each drawn term is A·g_i / m, and

        E[Σ_j a_{i_j} g_{i_j} · A / (m a_{i_j})] = m · Σ_i p_i · A g_i / m = Σ_i a_i g_i          (Hansen–Hurwitz)

    Its variance is (A²/m)·Var_p(g): drawing by weight leaves only the spread of the gaps, so a few draws stand for
    a batch whose weights are mostly below 1e-6 (the γ_aux = 50 P2 weight is, for ~37% of t). The shape is [m]
    at every step, so a compiled step never recompiles, and nothing here reads a value back to the host. With
    every weight zero the draws get multiplier 0 (the exact term is 0 too)."""

    samples: int

    def __post_init__(self):
        if self.samples < 1:
            raise ValueError(f"ImportanceAux needs at least one sample, got {self.samples}")

    def __call__(self, config: SDFTConfig, schedule: Schedule, t: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if config.lambda_aux <= 0:
            return every_aux(config, schedule, t)
        weight = config.lambda_aux * weights_at(config.aux_weighting, schedule, t).double()     # a_i, [B]
        total = weight.sum()
        some = total > 0
        probability = torch.where(some, weight / total.clamp_min(1e-300), torch.full_like(weight, 1 / len(weight)))
        drawn = torch.multinomial(probability, self.samples, replacement=True, generator=generator)
        scale = torch.where(some, total / (self.samples * weight[drawn].clamp_min(1e-300)), 0.0)
        return drawn, scale.float()


def sdft_losses(student, teacher, schedule: Schedule, x0: torch.Tensor, t: torch.Tensor,
                noise: torch.Tensor | None = None, config: SDFTConfig = SDFTConfig(), prediction: str = "eps",
                select_aux: AuxSelector = every_aux, generator: torch.Generator | None = None,
                teacher_stream: "torch.cuda.Stream | None" = None) -> dict[str, torch.Tensor]:
    """Per-sample SDFT terms (Eq. 6), each [B]: ``mse``, ``vb``, ``distill``, ``aux`` (already multiplied by their
    λ) and ``loss`` = their sum. x0: [B, C, H, W] in [−1, 1]; t: [B] long positions in ``schedule``; prediction:
    what student and teacher output (ε, v or x0; the distillation compares those outputs); generator: what a
    random ``select_aux`` draws from.

    The student runs once on [x_t; ε_aux] and the teacher once, under inference mode, on the same batch. The
    teacher is launched first; with ``teacher_stream`` (a CUDA stream) it runs there, alongside the student's
    forward on the current stream, which waits for it only where the gap is computed. The values are the same.
    """
    noise = torch.randn_like(x0) if noise is None else noise
    batch, channels = x0.shape[0], x0.shape[1]
    x_t = q_sample(schedule, x0, t, noise)
    aux, aux_scale = select_aux(config, schedule, t, generator) if config.needs_teacher \
        else (t[:0], noise.new_zeros(0))
    inputs, steps = torch.cat([x_t, noise[aux]]), torch.cat([t, t[aux]])

    teacher_pred = launch_teacher(teacher, inputs, schedule, steps, channels, teacher_stream) \
        if config.needs_teacher else None
    student_out = raw_output(student, inputs, schedule, steps)
    terms = diffusion_terms(schedule, student_out[:batch], x0, x_t, t, noise, config.mse_weighting, prediction)
    terms["distill"], terms["aux"] = torch.zeros_like(terms["mse"]), torch.zeros_like(terms["mse"])
    if config.needs_teacher:
        teacher_pred = join_teacher(teacher_pred, teacher_stream)
        student_pred, _ = split_eps(student_out, channels)
        gap = mean_flat((teacher_pred - student_pred.float()) ** 2)
        w_d = weights_at(config.distill_weighting, schedule, t)
        terms["distill"] = config.lambda_distill * w_d * gap[:batch]
        w_a = weights_at(config.aux_weighting, schedule, t[aux])
        terms["aux"] = terms["aux"].index_add(0, aux, config.lambda_aux * w_a * aux_scale * gap[batch:])
    terms["loss"] = terms["mse"] + terms["vb"] + terms["distill"] + terms["aux"]
    return terms


def launch_teacher(teacher, inputs: torch.Tensor, schedule: Schedule, steps: torch.Tensor, channels: int,
                   stream: "torch.cuda.Stream | None" = None) -> torch.Tensor:
    """The frozen teacher's prediction on ``inputs`` under inference mode, launched on ``stream`` when given (after
    the current stream's work so far, which made the inputs)."""
    context = nullcontext()
    if stream is not None:
        stream.wait_stream(torch.cuda.current_stream(inputs.device))
        inputs.record_stream(stream)
        context = torch.cuda.stream(stream)
    with context, torch.inference_mode():
        prediction, _ = split_eps(raw_output(teacher, inputs, schedule, steps), channels)
    return prediction


def join_teacher(prediction: torch.Tensor, stream: "torch.cuda.Stream | None" = None) -> torch.Tensor:
    """The teacher's prediction as a plain float32 constant (out of inference mode), on the current stream: which
    first waits for ``stream`` when the teacher ran there."""
    if stream is not None:
        current = torch.cuda.current_stream(prediction.device)
        current.wait_stream(stream)
        prediction.record_stream(current)
    return prediction.float().clone()
