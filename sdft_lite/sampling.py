"""Samplers as plain functions: DDIM (Song et al. 2021), DDIM inversion, ancestral sampling (Ho et al. 2020).

Every sampler walks a (possibly respaced) :class:`~sdft_lite.schedule.Schedule` by *position*: position
``k`` is the original timestep ``schedule.timesteps[k]``, which is what the network receives. Shapes:
``x``: [B, C, H, W]; the callback is called as ``callback(k, x, pred_x0)`` after every step.

Clipping x̂_0. guided-diffusion (and so the SDFT authors) clamp x̂_0 to [−1, 1] and then *re-derive* ε
from the clamped x̂_0 (``rederive_eps=True``). diffusers' DDIMScheduler keeps the network's ε
(``rederive_eps=False``, our default): with a small or briefly trained model the re-derived ε can blow up
at large t, where 1/√ᾱ_t ≈ 127, and leave samples as noise (seen with the small SynthFaces models).
"""
from __future__ import annotations

from typing import Callable

import torch

from .diffusion import call_model, p_mean_variance, predict_eps_from_x0
from .schedule import Schedule, extract

Callback = Callable[[int, torch.Tensor, torch.Tensor], None]



def gaussian(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, I) noise on ``device``, drawn where ``generator`` lives: a CPU generator gives the same numbers
    whether the model runs on a CPU or a GPU."""
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where, dtype=dtype).to(device)

def _positions(schedule: Schedule, x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.full((x.shape[0],), k, device=x.device, dtype=torch.long)


def ddim_step(schedule: Schedule, model_out: torch.Tensor, x: torch.Tensor, t: torch.Tensor, eta: float = 0.0,
              clip_denoised: bool = True, rederive_eps: bool = False,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step x_t → x_{t−1} (Song et al. 2021, Eq. 12). Returns (x_prev, pred_x0).

    x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ²) ε + σ z,  σ = η √((1−ᾱ_prev)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev).
    """
    out = p_mean_variance(schedule, model_out, x, t, clip_denoised)
    eps = predict_eps_from_x0(schedule, x, t, out.pred_x0) if rederive_eps else out.eps
    abar = extract(schedule.alphas_cumprod, t, x)
    abar_prev = extract(schedule.alphas_cumprod_prev, t, x)
    sigma = eta * ((1 - abar_prev) / (1 - abar)).sqrt() * (1 - abar / abar_prev).sqrt()
    x_prev = abar_prev.sqrt() * out.pred_x0 + (1 - abar_prev - sigma ** 2).sqrt() * eps
    if eta > 0:
        noise = gaussian(x.shape, generator, x.device, x.dtype)
        x_prev = x_prev + (t != 0).to(x.dtype).reshape(-1, *[1] * (x.ndim - 1)) * sigma * noise
    return x_prev, out.pred_x0


@torch.no_grad()
def ddim_sample(model, x: torch.Tensor, schedule: Schedule, eta: float = 0.0, clip_denoised: bool = True,
                rederive_eps: bool = False, start: int | None = None, generator: torch.Generator | None = None,
                callback: Callback | None = None, compile: str | None = None, cuda_graph: bool = False
                ) -> torch.Tensor:
    """Run DDIM from position ``start`` (default: the last, pure noise) down to 0. x: [B, C, H, W] → x_0.

    The loop asks nothing of the host: the schedule's tables sit on x's device (``Schedule.to``) and every step's
    timesteps are made before it starts. ``compile`` (a ``torch.compile`` mode: "default", "reduce-overhead",
    "max-autotune", ...) compiles the loop body, network and update together, for x's one shape; ``cuda_graph``
    (CUDA only) captures that body, compiled or not, once in a CUDA graph and replays it every step. Both are for
    deterministic DDIM (η = 0); in eager mode (neither) the result is the plain loop's, bit for bit."""
    start = len(schedule) - 1 if start is None else start
    if (compile or cuda_graph) and eta > 0:
        raise ValueError("compile / cuda_graph run deterministic DDIM only (eta = 0): its noise draws stay eager")
    schedule = schedule.to(x.device)
    steps = [(k, _positions(schedule, x, k)) for k in range(start, -1, -1)]

    def body(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ddim_step(schedule, call_model(model, x, schedule, t), x, t, eta, clip_denoised, rederive_eps,
                         generator)
    step = fast_step(body, compile, cuda_graph, x.device) if (compile or cuda_graph) else body
    for k, t in steps:
        x, pred_x0 = step(x, t)
        if callback is not None:
            callback(k, x, pred_x0)
    return x.clone() if (compile or cuda_graph) else x   # the graph's buffers stay its own


def fast_step(body, compile: str | None, cuda_graph: bool, device: torch.device):
    """``body(x, t) → (x_prev, pred_x0)`` compiled (``compile``: a torch.compile mode, one static shape) and/or
    captured in a CUDA graph (``cuda_graph``). The step returned keeps the loop's contract; under "reduce-overhead"
    (torch's CUDA-graph trees) its outputs are copied out before the next replay, as torch asks."""
    if cuda_graph and device.type != "cuda":
        raise ValueError(f"cuda_graph needs a CUDA device, not {device}")
    fn = torch.compile(body, mode=None if compile == "default" else compile, dynamic=False) if compile else body
    if cuda_graph:
        return GraphedStep(fn)
    if compile != "reduce-overhead":
        return fn

    def tree_step(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        torch.compiler.cudagraph_mark_step_begin()
        x_prev, pred_x0 = fn(x, t)
        return x_prev.clone(), pred_x0.clone()
    return tree_step


class GraphedStep:
    """A DDIM step replayed from a ``torch.cuda.CUDAGraph``. The first call runs ``fn`` on a side stream (where it
    compiles and cuDNN autotunes) and returns its result; the second captures ``fn`` on static buffers and replays
    it; every later call copies t in and replays. No step is computed twice. The (x_prev, pred_x0) returned are
    the graph's buffers, valid until the next call; x_prev is written back into the input buffer inside the
    graph, so a loop that feeds it back copies nothing."""

    def __init__(self, fn):
        self.fn, self.warm, self.graph = fn, False, None

    def _warm_up(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        side, main = torch.cuda.Stream(x.device), torch.cuda.current_stream(x.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            out = self.fn(x, t)
        main.wait_stream(side)
        for tensor in out:
            tensor.record_stream(main)
        self.warm = True
        return out

    def _capture(self, x: torch.Tensor, t: torch.Tensor) -> None:
        self.x, self.t = x.clone(), t.clone()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            x_prev, self.pred_x0 = self.fn(self.x, self.t)
            self.x.copy_(x_prev)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.warm:
            return self._warm_up(x, t)
        if self.graph is None:
            self._capture(x, t)
        if x is not self.x:
            self.x.copy_(x)
        self.t.copy_(t)
        self.graph.replay()
        return self.x, self.pred_x0


def ddim_invert_step(schedule: Schedule, model_out: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
                     clip_denoised: bool = False) -> torch.Tensor:
    """One deterministic DDIM inversion step x_t → x_{t+1}: √ᾱ_next x̂_0 + √(1 − ᾱ_next) ε."""
    out = p_mean_variance(schedule, model_out, x, t, clip_denoised)
    eps = predict_eps_from_x0(schedule, x, t, out.pred_x0)
    abar_next = extract(schedule.alphas_cumprod_next, t, x)
    return abar_next.sqrt() * out.pred_x0 + (1 - abar_next).sqrt() * eps


@torch.no_grad()
def ddim_invert(model, x0: torch.Tensor, schedule: Schedule, stop: int | None = None, clip_denoised: bool = False,
                callback: Callback | None = None) -> torch.Tensor:
    """Encode x_0 → x_T by running the DDIM ODE forward (guided-diffusion's ``ddim_reverse_sample_loop``).

    Positions 0..stop−1 are run, so the result sits at position ``stop`` and ``ddim_sample(..., start=stop)``
    decodes it back. With the default stop = K the last step lands on ᾱ_next = 0 (the latent is the predicted
    noise) and, as in guided-diffusion and DDIB, decoding starts at position K − 1.
    """
    x = x0
    stop = len(schedule) if stop is None else stop
    for k in range(stop):
        t = _positions(schedule, x, k)
        x = ddim_invert_step(schedule, call_model(model, x, schedule, t), x, t, clip_denoised)
        if callback is not None:
            callback(k, x, x)
    return x


def ancestral_step(schedule: Schedule, model_out: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
                   clip_denoised: bool = True, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral step x_{t−1} ~ p(x_{t−1} | x_t) (no noise at t = 0). Returns (x_prev, pred_x0)."""
    out = p_mean_variance(schedule, model_out, x, t, clip_denoised)
    noise = gaussian(x.shape, generator, x.device, x.dtype)
    nonzero = (t != 0).to(x.dtype).reshape(-1, *[1] * (x.ndim - 1))
    return out.mean + nonzero * (0.5 * out.log_variance).exp() * noise, out.pred_x0


@torch.no_grad()
def ancestral_sample(model, x: torch.Tensor, schedule: Schedule, clip_denoised: bool = True,
                     start: int | None = None, generator: torch.Generator | None = None,
                     callback: Callback | None = None) -> torch.Tensor:
    """Ancestral sampling (DDPM) from position ``start`` (default: the last) down to 0."""
    start = len(schedule) - 1 if start is None else start
    for k in range(start, -1, -1):
        t = _positions(schedule, x, k)
        x, pred_x0 = ancestral_step(schedule, call_model(model, x, schedule, t), x, t, clip_denoised, generator)
        if callback is not None:
            callback(k, x, pred_x0)
    return x


# the samplers by name (``generate(..., sampler=...)``, ``sdft-lite sample --sampler``); each is
# f(model, x_T, schedule, generator=..., callback=...) → x_0. A new sampler is a function here and a line below.
SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {"ddim": ddim_sample, "ancestral": ancestral_sample}


def nearest_position(schedule: Schedule, timestep: int) -> int:
    """The position whose original timestep is closest to ``timestep``."""
    return int((schedule.timesteps - timestep).abs().argmin())


@torch.no_grad()
def partial_reverse(model, shape: tuple[int, ...], schedule: Schedule, start_timestep: int,
                    sampler: str = "ddim", generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu", **kwargs) -> torch.Tensor:
    """The partial reverse process from *pure noise* (paper Fig. 4): x_{T'} ~ N(0, I) at an intermediate
    T' = ``start_timestep``, then the ordinary reverse process from T' down to 0.

    A well-trained model treats pure noise at T' < T as if it were a noised image and still produces a
    plausible sample: the reverse process is robust to the input's lost structure, which is what makes
    SDFT's auxiliary input (pure noise at every t) meaningful.
    """
    x = gaussian(shape, generator, torch.device(device))
    start = nearest_position(schedule, start_timestep)
    if sampler == "ddim":
        return ddim_sample(model, x, schedule, start=start, generator=generator, **kwargs)
    if sampler == "ancestral":
        return ancestral_sample(model, x, schedule, start=start, generator=generator, **kwargs)
    raise ValueError(f"unknown sampler {sampler!r}; use 'ddim' or 'ancestral'")
