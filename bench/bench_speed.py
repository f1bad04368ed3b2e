"""SDFT training and DDIM sampling speed (issue #20): sdft_lite against the straightforward reference, measured in
the same process, phase by phase; each phase writes its numbers into OUT/speed.json as soon as it ends (with the
device, torch version and the reference's figure beside it), so a time-out keeps what finished.

    python3 bench/bench_speed.py --out OUT/speed                                   # every phase, in order (GPU)
    python3 bench/bench_speed.py --out OUT/speed --phases reference,compiled,profile,sampling --time-limit 540
    python3 bench/bench_speed.py --out /tmp/speed --smoke                          # the machinery on a CPU

Phases (``--phases``, run in the order given; ``reference`` runs first whenever a later phase compares with it):

- ``reference``: a plain SDFT step on guided-diffusion's UNetModel (fp32/TF32 and bf16 autocast) and a plain naive
  step, written as one would at first (student and fp32 teacher on [x_t; ε], AdamW). Every later figure is
  compared with these, measured in this process.
- ``sync_check``: host synchronisations per eager SDFT step and per DDIM step (``torch.cuda.set_sync_debug_mode``),
  with the lines that cause them.
- ``eager``: sdft_lite's eager step: SDFT skipping negligible aux samples, SDFT with every aux sample, naive.
- ``compiled``: the compiled SDFT step computing every aux sample (torch.compile, default mode; one static shape).
- ``aux4``: the compiled step with the unbiased 4-sample aux estimator (``aux_samples=4``), what the GPU presets
  run (every convolution channels-last: ``compile_channels_last``); its losses over the warm-up steps are compared
  with the same steps run eagerly. ``resident``, ``profile`` and ``stream`` reuse its compiled trainer (no recompile):
  ``resident``: the same step with the uint8 data set on the host (``TrainConfig.data_on_device=False``, as
  before it existed: each step gathers 16 images there and copies them over) against the default, on the GPU;
  ``profile``: torch.profiler over 5 steps, kernel time by category, and whether the convolutions run
  channels-last (inductor's layout decision per graph, and the time in cuDNN's NCHW↔NHWC transposes);
  ``stream``: the teacher's forward on a side CUDA stream (``TrainConfig.teacher_stream``).
- ``naive``: the compiled naive step (the SDFT ÷ naive ratios).
- ``layout_inductor``: the aux4 step compiled with ``compile_channels_last=False``: inductor chooses the layout
  itself and keeps the training graph NCHW (cuDNN then transposes around its NHWC kernels);
  ``layout_channels_last``: compiled with channels_last inputs and weights (``channels_last=True``).
- ``upsample_interpolate``: the aux4 step compiled with the U-Net's upsample as ``F.interpolate`` (before it
  became a broadcast under compile: inductor writes the gradient of ``F.interpolate`` as an atomic scatter-add).
- ``coordinate_descent``: the aux4 step compiled with ``torch._inductor.config.coordinate_descent_tuning``.
- ``fused_norm``: the aux4 step with every ResBlock's GroupNorm · scale-shift · SiLU as the fused Triton kernels
  (``TrainConfig.fused_norm``; op-level numbers: ``bench/bench_fused_norm.py``).
- ``loss_curve``: the fast eager trainer against the plain one (fp32, every aux sample) on the same batches, t and
  ε: their loss curves must agree up to bf16 rounding. ``memory``: batch 4 with gradient checkpointing, bf16 and
  fp16 (what a T4 would run).
- ``sampling``: DDIM-40 (bf16) at ``--sample-batches``: eager, compiled (default), CUDA graph (eager body),
  compiled + CUDA graph, compiled "reduce-overhead" (torch's CUDA-graph trees), compiled "max-autotune" (inductor
  times Triton templates against cuDNN per convolution; minutes to compile) + CUDA graph; the reference sampler
  at the first batch size. Larger batches run only ``--large-batch-modes``.

Counting forward-equivalents (FE) per image, for TFLOP/s and MFU: a forward of one image through the U-Net is 1 FE
(its FLOPs are measured), a backward 2, so an input the student trains on costs 3 and a teacher (no-grad) input 1.
Naive: 3. SDFT with every aux sample (the reference, and sdft_lite compiled): student on x_t and on ε (2 × 3) plus
the teacher on both (2 × 1) = 8. Skipping aux samples of weight < 1e-6 (eager): 4 · (1 + kept fraction of t).
m drawn aux samples per batch B: 4 · (1 + m / B). DDIM-40 sampling: 40 per image.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import dataclasses
import json
import platform
import re
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provenance import commit  # noqa: E402  (bench/ is this script's folder)
from sdft_lite.data import ImageSet  # noqa: E402
from sdft_lite.diffusion import mean_flat  # noqa: E402
from sdft_lite.sample import generate  # noqa: E402
from sdft_lite.schedule import make_schedule  # noqa: E402
from sdft_lite.train import TrainConfig, Trainer  # noqa: E402
from sdft_lite.unet import UNetConfig, UNetModel  # noqa: E402

PHASES = ("reference", "sync_check", "eager", "aux4", "resident", "profile", "stream", "naive", "compiled",
          "sampling", "sampling_profile", "layout_inductor", "layout_channels_last", "upsample_interpolate",
          "coordinate_descent", "fused_norm", "loss_curve", "memory")
PEAK_NOTE = "MFU = achieved / measured bf16 matmul peak (8192³, this run)"
ISSUE_BASELINE_H200 = {   # the figures issue #20 starts from (H200, batch 16, 256 px, img/s)
    "reference_sdft_fp32": 32.1, "reference_sdft_bf16": 38.5, "reference_naive": 77.1,
    "sdft_lite_sdft_eager": 37.4, "sdft_lite_sdft_compiled": 68.9, "sdft_lite_naive_eager": 94.7,
    "sdft_lite_naive_compiled": 153.3, "ddim40_batch64_eager": 6.9, "ddim40_batch64_compiled": 16.3}
TARGETS = {"sdft_img_per_s": 120, "sdft_over_naive_step_time": 1.5, "ddim40_batch64_img_per_s": 22}
EVERY_AUX, AUX4, NAIVE = ("sdft_lite_sdft_every_aux_bf16_compiled", "sdft_lite_sdft_aux4_bf16_compiled",
                          "sdft_lite_naive_bf16_compiled")
AUX4_OVERRIDES = dict(aux_skip_below=0.0, aux_samples=4)
SAMPLE_MODES = {"eager": (None, False), "compiled": ("default", False), "graph": (None, True),
                "compiled_graph": ("default", True), "reduce_overhead": ("reduce-overhead", False),
                "autotune_graph": ("max-autotune-no-cudagraphs", True)}   # inductor benchmarks conv/GEMM kernels


# ---- settings -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    """What every phase shares: device, model size, batch, timing and sampling settings."""

    device: str = "cuda"
    unet: UNetConfig = field(default_factory=lambda: UNetConfig.ffhq256().replace(dropout=0.1))
    batch: int = 16
    iters: int = 10
    warmup: int = 10            # steps before timing (the first compiles; cuDNN autotunes each shape)
    profile_steps: int = 5
    sample_steps: str = "ddim40"
    sample_batches: tuple[int, ...] = (64, 128, 256)
    sample_modes: tuple[str, ...] = ("eager", "compiled", "graph", "compiled_graph", "reduce_overhead")
    large_batch_modes: tuple[str, ...] = ("compiled_graph",)
    num_images: int = 256

    @property
    def size(self) -> int:
        return self.unet.image_size

    @classmethod
    def smoke(cls) -> "Setup":
        """The machinery on a CPU: the tiny U-Net at 32 px, batch 4, 2 timed steps, DDIM-5, eager sampling."""
        return cls(device="cpu", unet=UNetConfig.tiny().replace(dropout=0.1), batch=4, iters=2, warmup=1,
                   profile_steps=2, sample_steps="ddim5", sample_batches=(4, 8), sample_modes=("eager",),
                   large_batch_modes=("eager",), num_images=16)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, warmup: int, iters: int, device: str) -> float:
    """Seconds per call of fn, after warm-up, with the device synchronised."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


# ---- the record -----------------------------------------------------------------------------------------------
class Record:
    """speed.json, rewritten whenever a phase ends."""

    def __init__(self, out_dir: Path, header: dict):
        self.out_dir = out_dir
        self.path = out_dir / "speed.json"
        self.data = {**header, "reference": {}, "phases": {}, "ratios": {}, "skipped": [], "errors": {},
                     "unfinished": {}}   # phase → second it started, while it runs
        self.write()

    def write(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2))

    def phase(self, name: str, **values) -> dict:
        self.data["phases"][name] = values
        self.write()
        print(name, json.dumps(values), flush=True)
        return values

    def reference(self, name: str) -> float | None:
        return self.data["reference"].get(name, {}).get("img_per_s")


# ---- models and data ------------------------------------------------------------------------------------------
def gd_flags(unet: UNetConfig) -> dict:
    flags = unet.to_flags()
    flags.pop("in_channels")
    return dict(flags, class_cond=False, use_fp16=False)


def randomise_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Every weight matrix and kernel of ``model`` drawn from N(0, 0.02²), in place, from torch's global generator
    (no zero layers, unlike a freshly built ADM U-Net); biases and norms kept."""
    for p in model.parameters():
        if p.ndim > 1:
            torch.nn.init.normal_(p, std=0.02)
    return model


def build_models(setup: Setup):
    """(guided-diffusion reference UNet, our UNet with the same random weights, no zero layers)."""
    from guided_diffusion.script_util import create_model
    torch.manual_seed(0)
    reference = create_model(**gd_flags(setup.unet))
    randomise_weights(reference)   # random "pretrained" weights, no zero layers
    ours = UNetModel(setup.unet)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def forward_gflop(model: torch.nn.Module, setup: Setup) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randn(1, 3, setup.size, setup.size, device=setup.device)
    t = torch.tensor([500], device=setup.device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.to(setup.device)(x, t)
    return counter.get_total_flops() / 1e9


def matmul_peak(device: str) -> float:
    n = 8192 if device == "cuda" else 512
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n ** 3 / timed(lambda: a @ b, 3, 10, device) / 1e12


# ---- the straightforward reference ------------------------------------------------------------------------------
def make_reference_step(student, teacher, schedule, data, setup: Setup, mode: str, autocast_dtype):
    """A plain SDFT (or naive) step on guided-diffusion's UNet, written as one would at first."""
    from guided_diffusion import gaussian_diffusion as gdm
    diffusion = gdm.GaussianDiffusion(betas=gdm.get_named_beta_schedule("linear", 1000).copy(),
                                      model_mean_type=gdm.ModelMeanType.EPSILON,
                                      model_var_type=gdm.ModelVarType.LEARNED_RANGE,
                                      loss_type=gdm.LossType.RESCALED_MSE)
    optimizer = torch.optim.AdamW(student.parameters(), lr=2e-5)
    device, batch = setup.device, setup.batch
    abar = schedule.alphas_cumprod.to(device)
    w_d_all, w_a_all = ((1 - abar) ** 3).float(), ((1 - abar) ** 50).float()

    def step():
        x0 = data.batch(torch.randint(0, len(data), (batch,)), device)
        t = torch.randint(0, 1000, (batch,), device=device)
        noise = torch.randn_like(x0)
        x_t = diffusion.q_sample(x0, t, noise=noise)
        with torch.autocast(device, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            if mode == "sdft":
                out = student(torch.cat([x_t, noise]), torch.cat([t, t])).float()
                with torch.no_grad():
                    teacher_eps = teacher(torch.cat([x_t, noise]), torch.cat([t, t])).float()[:, :3]
            else:
                out = student(x_t, t).float()
        eps, v = out[:batch, :3], out[:batch, 3:]
        mse = mean_flat((noise - eps) ** 2)
        frozen = torch.cat([eps.detach(), v], dim=1)
        vb = diffusion._vb_terms_bpd(model=lambda *a, **k: frozen, x_start=x0, x_t=x_t, t=t,
                                     clip_denoised=False)["output"]
        loss = mse + vb
        if mode == "sdft":
            gap = mean_flat((teacher_eps - out[:, :3]) ** 2)
            loss = loss + 0.1 * w_d_all[t] * gap[:batch] + 0.1 * w_a_all[t] * gap[batch:]
        optimizer.zero_grad(set_to_none=True)
        loss.mean().backward()
        optimizer.step()
    return step


def reference_sampler(model, setup: Setup):
    from guided_diffusion.script_util import create_gaussian_diffusion
    diffusion = create_gaussian_diffusion(steps=1000, learn_sigma=True, noise_schedule="linear",
                                          timestep_respacing=setup.sample_steps, rescale_learned_sigmas=True)

    def run(n):
        with torch.autocast(setup.device, dtype=torch.bfloat16), torch.no_grad():
            return diffusion.ddim_sample_loop(model, (n, 3, setup.size, setup.size), clip_denoised=True, eta=0.0)
    return run


# ---- the benchmark's state ------------------------------------------------------------------------------------
class Bench:
    """The models, data and measurements every phase shares; one method per phase."""

    def __init__(self, setup: Setup, record: Record, workdir: Path):
        self.setup, self.record, self.workdir = setup, record, workdir
        self.reference_model, self.ours = build_models(setup)
        self.gflop = forward_gflop(self.ours, setup)
        self.ours.cpu()
        self.peak = matmul_peak(setup.device)
        images = torch.randint(0, 256, (setup.num_images, 3, setup.size, setup.size), dtype=torch.uint8)
        self.data = ImageSet(images, [Path(f"{i}.png") for i in range(setup.num_images)])
        self.schedule = make_schedule()
        self.source = workdir / "bench_source.pt"
        torch.save(self.ours.state_dict(), self.source)
        kept = float(((0.1 * (1 - self.schedule.alphas_cumprod) ** 50) >= 1e-6).double().mean())
        b = setup.batch
        self.fe = {"reference_sdft": 8.0, "naive": 3.0, "sdft_every_aux": 8.0, "sdft_skip": 4.0 * (1 + kept),
                   "sdft_aux4": 4.0 * (1 + 4 / b)}
        self.compiled = None   # the compiled aux4 trainer (the GPU presets'), shared by resident, profile, stream
        self.last_compile_mode = None   # sampling: torch.compile mode of the last compiled step
        record.data.update(bf16_matmul_peak_tflops=round(self.peak, 1), gflop_per_forward=round(self.gflop, 2),
                           aux_kept_fraction=round(kept, 3), forward_equivalents=self.fe)
        record.write()

    # ---- helpers -------------------------------------------------------------------------------
    def trainer(self, **overrides) -> Trainer:
        """sdft_lite's Trainer with the benchmark's settings: the MetFaces preset, bf16, eager, aux samples of weight
        < 1e-6 skipped (the aux4 and every-aux phases override the last two)."""
        s = self.setup
        settings = dict(source_checkpoint=str(self.source), out_dir=str(self.workdir / "run"), batch_size=s.batch,
                        precision="bf16", aux_skip_below=1e-6, aux_samples=0, progress=False, sample_every=0,
                        save_every=0, compile=False, unet=s.unet)
        return Trainer(TrainConfig.metfaces(**{**settings, **overrides}), device=s.device, data=self.data)

    def throughput(self, step, fwd_equiv: float, reference: str | None, warmup: int | None = None,
                   batch: int | None = None, **extra) -> dict:
        """img/s, step time, TFLOP/s, MFU and peak memory of ``step``; the reference's img/s beside it."""
        s = self.setup
        if s.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds = timed(step, s.warmup if warmup is None else warmup, s.iters, s.device)
        ips = (batch or s.batch) / seconds
        tflops = ips * fwd_equiv * self.gflop / 1000
        values = dict(img_per_s=round(ips, 2), step_ms=round(seconds * 1000, 1), tflops=round(tflops, 1),
                      mfu=round(tflops / self.peak, 3), forward_equivalents_per_image=round(fwd_equiv, 2), **extra)
        if s.device == "cuda":
            values["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
        ref = self.record.reference(reference) if reference else None
        if ref:
            values.update(reference=reference, reference_img_per_s=ref, speedup_vs_reference=round(ips / ref, 2))
        return values

    def compiled_trainer(self, label: str, inductor: dict | None = None, **overrides) -> tuple[Trainer, dict]:
        """A fresh compiled trainer (dynamo reset first), warmed up: (trainer, {warm-up seconds, layout decisions})."""
        torch._dynamo.reset()
        release_memory(self.setup.device)
        decisions: list[dict] = []
        with inductor_config(inductor or {}), layout_decisions(decisions):
            start = time.perf_counter()
            trainer = self.trainer(compile=True, **overrides)
            losses = [trainer.train_step()["loss"] for _ in range(self.setup.warmup)]   # the first step compiles
            sync(self.setup.device)
        return trainer, {"warmup_seconds": round(time.perf_counter() - start, 1), "label": label,
                         "inductor_channels_last_graphs": decisions, "warmup_losses": [float(v) for v in losses]}

    def eager_losses(self, **overrides) -> list[float]:
        """The losses of the first warm-up-many steps of the same run, eager (no compile, the same bf16 autocast)."""
        trainer = self.trainer(**overrides)
        losses = [float(trainer.train_step()["loss"]) for _ in range(self.setup.warmup)]
        del trainer
        release_memory(self.setup.device)
        return losses

    def ratio(self, name: str, sdft_phase: str, naive_phase: str) -> None:
        phases = self.record.data["phases"]
        if sdft_phase in phases and naive_phase in phases:
            self.record.data["ratios"][name] = round(phases[naive_phase]["img_per_s"] / phases[sdft_phase]["img_per_s"], 2)
            self.record.write()

    # ---- phases ----------------------------------------------------------------------------------
    def reference_phase(self) -> None:
        s = self.setup
        student = self.reference_model.to(s.device)
        teacher = copy.deepcopy(student).eval().requires_grad_(False)
        for name, mode, dtype, fe in (("reference_sdft_fp32_tf32", "sdft", None, self.fe["reference_sdft"]),
                                      ("reference_sdft_bf16", "sdft", torch.bfloat16, self.fe["reference_sdft"]),
                                      ("reference_naive_fp32_tf32", "naive", None, self.fe["naive"])):
            step = make_reference_step(student, teacher, self.schedule, self.data, s, mode, dtype)
            self.record.data["reference"][name] = self.throughput(step, fe, None, warmup=3)
            self.record.write()
            print(name, self.record.data["reference"][name], flush=True)
        del teacher
        self.reference_model.load_state_dict(self.ours.state_dict())   # the sampler's reference: the same weights
        self.reference_model.cpu()
        release_memory(s.device)

    def sync_check_phase(self) -> None:
        if self.setup.device != "cuda":
            self.record.phase("sync_check", skipped="needs CUDA (torch.cuda.set_sync_debug_mode)")
            return
        trainer = self.trainer(aux_skip_below=0.0)
        trainer.train_step()
        step_syncs = count_syncs(trainer.train_step)
        del trainer
        model = self.ours.to(self.setup.device).eval()
        sample_syncs = count_syncs(lambda: generate(model, 2, self.setup.size, "ddim5", device="cuda",
                                                    batch_size=2, precision=torch.bfloat16))
        self.ours.cpu()
        self.record.phase("sync_check", train_step_eager_every_aux=step_syncs,
                          generate_ddim5_batch2=sample_syncs,
                          note="generate's one expected sync is the copy of the samples to the host")

    def eager_phase(self) -> None:
        for name, overrides, fe, reference in (
                ("sdft_lite_sdft_skip_bf16", {}, self.fe["sdft_skip"], "reference_sdft_fp32_tf32"),
                ("sdft_lite_sdft_every_aux_bf16", dict(aux_skip_below=0.0), self.fe["sdft_every_aux"],
                 "reference_sdft_fp32_tf32"),
                ("sdft_lite_naive_bf16", dict(mode="naive"), self.fe["naive"], "reference_naive_fp32_tf32")):
            trainer = self.trainer(**overrides)
            self.record.phase(name, **self.throughput(trainer.train_step, fe, reference))
            del trainer
            release_memory(self.setup.device)
        self.ratio("eager_sdft_skip_over_naive_time", "sdft_lite_sdft_skip_bf16", "sdft_lite_naive_bf16")

    def compiled_phase(self) -> None:
        self.variant_phase(EVERY_AUX, self.fe["sdft_every_aux"], "reference_sdft_fp32_tf32", aux_skip_below=0.0)
        self.ratio("compiled_sdft_over_naive_time", EVERY_AUX, NAIVE)

    def aux4_phase(self) -> None:
        """The GPU presets' step, compiled; kept for resident, profile and stream."""
        self.drop_compiled()
        eager = self.eager_losses(**AUX4_OVERRIDES)
        trainer, info = self.compiled_trainer("4 aux samples drawn by weight (the GPU presets)", **AUX4_OVERRIDES)
        self.compiled = trainer
        compiled = info.pop("warmup_losses")
        info["loss_vs_eager"] = relative_differences(compiled, eager)
        values = self.throughput(trainer.train_step, self.fe["sdft_aux4"], "reference_sdft_fp32_tf32", **info)
        if self.setup.device == "cuda":
            values["syncs_per_step"] = count_syncs(trainer.train_step)
        self.record.phase(AUX4, **values, overrides={k: str(v) for k, v in AUX4_OVERRIDES.items()})
        self.ratio("compiled_sdft_aux4_over_naive_time", AUX4, NAIVE)

    def ensure_compiled(self) -> Trainer:
        if self.compiled is None:
            self.aux4_phase()
        return self.compiled

    def resident_phase(self) -> None:
        self.record.phase(f"{AUX4}_data_on_host", **self.on_host(self.ensure_compiled(), self.fe["sdft_aux4"]))

    def on_host(self, trainer: Trainer, fe: float) -> dict:
        """The trainer's step timed with its image set on the host (``data_on_device=False``: a gather there and a
        copy per step); the first batch drawn there must equal the device's bit for bit."""
        held = trainer.data
        index = torch.arange(min(len(held), self.setup.batch))
        trainer.data = dataclasses.replace(held, images=held.images.cpu())
        try:
            same = torch.equal(trainer.data.batch(index, self.setup.device), held.batch(index, self.setup.device))
            values = self.throughput(trainer.train_step, fe, "reference_sdft_fp32_tf32", warmup=2,
                                     data="uint8 images on the host; gathered there, copied each step",
                                     data_held_on=str(held.images.device), batch_equal_to_held=same)
            if self.setup.device == "cuda":
                values["syncs_per_step"] = count_syncs(trainer.train_step)
            return values
        finally:
            trainer.data = held

    def profile_phase(self) -> None:
        trainer = self.ensure_compiled()
        report = profile_steps(trainer.train_step, self.setup.profile_steps, self.setup.device, self.workdir)
        report["channels_last"] = {
            "inductor_layout_decisions": self.record.data["phases"].get(AUX4, {}).get("inductor_channels_last_graphs"),
            "note": "inductor_layout_decisions: one entry per compiled graph (forward, backward, teacher); "
                    "channels_last False = inductor kept NCHW. Time in cuDNN's nchwToNhwc/nhwcToNchw kernels is "
                    "the 'conv_layout_transform' category: cuDNN transposing NCHW tensors around NHWC kernels."}
        report["step_ms_timed"] = self.record.data["phases"].get(AUX4, {}).get("step_ms")
        (self.record.out_dir / "profile.json").write_text(json.dumps(report, indent=2))
        self.record.phase(f"profile_{AUX4}", **{k: v for k, v in report.items() if k != "top_kernels"},
                          top_kernels=report["top_kernels"][:15], files=["profile.json", "profile_table.txt"])

    def stream_phase(self) -> None:
        trainer = self.ensure_compiled()
        if self.setup.device != "cuda":
            self.record.phase(f"{AUX4}_teacher_stream", skipped="needs CUDA")
            return
        trainer.teacher_stream = torch.cuda.Stream()   # what TrainConfig.teacher_stream sets up
        try:
            values = self.throughput(trainer.train_step, self.fe["sdft_aux4"], "reference_sdft_fp32_tf32",
                                     warmup=3, teacher="forward on a side CUDA stream (same compiled graphs)")
            self.record.phase(f"{AUX4}_teacher_stream", **values)
        finally:
            trainer.teacher_stream = None

    def drop_compiled(self) -> None:
        self.compiled = None
        release_memory(self.setup.device)

    def variant_phase(self, name: str, fe: float, reference: str, inductor: dict | None = None,
                      **overrides) -> None:
        """A compiled trainer with other settings, timed, then dropped."""
        self.drop_compiled()
        trainer, info = self.compiled_trainer(name, inductor, **overrides)
        info.pop("warmup_losses")
        self.record.phase(name, **self.throughput(trainer.train_step, fe, reference, **info),
                          inductor_config=inductor or {}, overrides={k: str(v) for k, v in overrides.items()})
        del trainer
        release_memory(self.setup.device)

    def naive_phase(self) -> None:
        self.variant_phase(NAIVE, self.fe["naive"], "reference_naive_fp32_tf32", mode="naive")
        self.ratio("compiled_sdft_over_naive_time", EVERY_AUX, NAIVE)
        self.ratio("compiled_sdft_aux4_over_naive_time", AUX4, NAIVE)

    def layout_inductor_phase(self) -> None:
        self.variant_phase(f"{AUX4}_layout_by_inductor", self.fe["sdft_aux4"], "reference_sdft_fp32_tf32",
                           compile_channels_last=False, **AUX4_OVERRIDES)

    def layout_channels_last_phase(self) -> None:
        self.variant_phase(f"{AUX4}_channels_last", self.fe["sdft_aux4"], "reference_sdft_fp32_tf32",
                           channels_last=True, **AUX4_OVERRIDES)

    def upsample_interpolate_phase(self) -> None:
        with interpolate_upsample():   # for the whole phase: dynamo guards on the function it traced
            self.variant_phase(f"{AUX4}_upsample_interpolate", self.fe["sdft_aux4"], "reference_sdft_fp32_tf32",
                               **AUX4_OVERRIDES)

    def coordinate_descent_phase(self) -> None:
        self.variant_phase(f"{AUX4}_coordinate_descent", self.fe["sdft_aux4"], "reference_sdft_fp32_tf32",
                           inductor={"coordinate_descent_tuning": True}, **AUX4_OVERRIDES)

    def fused_norm_phase(self) -> None:
        self.variant_phase(f"{AUX4}_fused_norm", self.fe["sdft_aux4"], "reference_sdft_fp32_tf32", fused_norm=True,
                           **AUX4_OVERRIDES)

    def sampling_phase(self) -> None:
        s = self.setup
        self.drop_compiled()
        model = self.ours.to(s.device).eval()
        steps = int(s.sample_steps.removeprefix("ddim"))
        first = s.sample_batches[0]
        self.reference_sampling(first, steps)
        eager_images = None
        for batch in s.sample_batches:
            for mode in (s.sample_modes if batch == first else s.large_batch_modes):
                if mode not in SAMPLE_MODES:
                    raise ValueError(f"unknown sampling mode {mode!r}; use {', '.join(SAMPLE_MODES)}")
                compile_mode, graph = SAMPLE_MODES[mode]
                if (graph or compile_mode == "reduce-overhead") and s.device != "cuda":
                    continue
                name = f"sdft_lite_ddim{steps}_bf16_{mode}_batch{batch}"
                try:
                    images, values = self.time_sampling(model, batch, compile_mode, graph, steps)
                except Exception as error:   # one mode failing (e.g. graph capture) leaves the others
                    self.record.data["errors"][name] = error_text(error)
                    self.record.write()
                    continue
                if batch == first and mode == "eager":
                    eager_images = images
                elif batch == first and eager_images is not None:
                    values.update(difference_from_eager(images, eager_images))
                self.record.phase(name, **values)
        self.ours.cpu()

    def use_compile_mode(self, mode: str) -> None:
        """Sampling: a new torch.compile mode starts from a reset dynamo; the same mode reuses its compiled step."""
        if mode != self.last_compile_mode:
            torch._dynamo.reset()
            self.last_compile_mode = mode

    def sampling_profile_phase(self) -> None:
        """Kernel time by category over one compiled DDIM run (default mode, no CUDA graph: the profiler sees each
        kernel) at the first sampling batch size."""
        s = self.setup
        self.drop_compiled()
        model, batch = self.ours.to(s.device).eval(), s.sample_batches[0]
        self.use_compile_mode("default")

        def run():
            generate(model, batch, s.size, s.sample_steps, device=s.device, batch_size=batch,
                     precision=torch.bfloat16, compile="default")
        run()   # compiles, unless the sampling phase already did
        report = profile_steps(run, 1, s.device, self.workdir, table="profile_sampling_table.txt")
        (self.record.out_dir / "profile_sampling.json").write_text(json.dumps(report, indent=2))
        self.record.phase(f"profile_sdft_lite_{s.sample_steps}_bf16_compiled_batch{batch}",
                          **{k: v for k, v in report.items() if k != "top_kernels"},
                          top_kernels=report["top_kernels"][:15],
                          files=["profile_sampling.json", "profile_sampling_table.txt"])
        self.ours.cpu()

    def time_sampling(self, model, batch: int, compile_mode, graph: bool, steps: int):
        s = self.setup
        if compile_mode:
            self.use_compile_mode(compile_mode)

        def run():
            return generate(model, batch, s.size, s.sample_steps, device=s.device, batch_size=batch,
                            precision=torch.bfloat16, compile=compile_mode, cuda_graph=graph)
        start = time.perf_counter()
        run()
        sync(s.device)
        first = time.perf_counter() - start
        start = time.perf_counter()
        images = run()
        sync(s.device)
        seconds = time.perf_counter() - start
        values = dict(img_per_s=round(batch / seconds, 2), seconds=round(seconds, 2),
                      first_call_seconds=round(first, 1), batch=batch, compile=compile_mode, cuda_graph=graph,
                      tflops=round(batch / seconds * steps * self.gflop / 1000, 1))
        ref = self.record.data["reference"].get(f"reference_ddim{steps}_bf16_batch{batch}", {}).get("img_per_s")
        if ref:
            values.update(reference_img_per_s=ref, speedup_vs_reference=round(batch / seconds / ref, 2))
        return images, values

    def loss_curve_phase(self, steps: int = 30) -> None:
        curves = {}
        for name, overrides in (("plain", dict(precision="fp32", aux_skip_below=0.0, channels_last=False)),
                                ("fast", {})):
            trainer = self.trainer(**overrides)
            curves[name] = [float(trainer.train_step()["loss"]) for _ in range(steps)]
            del trainer
            release_memory(self.setup.device)
        self.record.phase("loss_curve_fast_vs_plain", **relative_differences(curves["fast"], curves["plain"]))

    def memory_phase(self) -> None:
        for precision in ("bf16", "fp16"):
            trainer = self.trainer(batch_size=4, precision=precision, unet=self.setup.unet.replace(use_checkpoint=True))
            values = self.throughput(trainer.train_step, self.fe["sdft_skip"], None, warmup=2, batch=4)
            self.record.phase(f"sdft_lite_sdft_batch4_checkpointing_{precision}", **values)
            del trainer
            release_memory(self.setup.device)

    def reference_sampling(self, batch: int, steps: int) -> None:
        s = self.setup
        model = self.reference_model.to(s.device).eval()
        run = reference_sampler(model, s)
        seconds = timed(lambda: run(batch), 0, 1, s.device)
        self.record.data["reference"][f"reference_ddim{steps}_bf16_batch{batch}"] = dict(
            img_per_s=round(batch / seconds, 2), seconds=round(seconds, 2), batch=batch)
        self.record.write()
        self.reference_model.cpu()


# ---- instruments ----------------------------------------------------------------------------------------------
def release_memory(device: str) -> None:
    import gc
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def error_text(error: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(error), error)).strip()[-2000:]


@contextlib.contextmanager
def inductor_config(settings: dict):
    """torch._inductor.config values for the block."""
    import torch._inductor.config as config
    with config.patch(settings) if settings else contextlib.nullcontext():
        yield


@contextlib.contextmanager
def interpolate_upsample():
    """The U-Net's nearest x2 upsample as ``F.interpolate`` on every path, compiled too (this process only)."""
    from sdft_lite import unet
    original = unet.upsample_nearest2x
    unet.upsample_nearest2x = lambda x: torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    try:
        yield
    finally:
        unet.upsample_nearest2x = original


@contextlib.contextmanager
def layout_decisions(log: list):
    """Record inductor's channels-last decision for every graph compiled in the block (GraphLowering's
    ``decide_layout_opt``: True = convolutions and their neighbours in channels-last)."""
    from torch._inductor.graph import GraphLowering
    original = GraphLowering.__dict__["decide_layout_opt"]

    def decide(gm, *, is_inference):
        decision = original.__func__(gm, is_inference=is_inference)
        convs = sum(1 for n in gm.graph.nodes if n.target is torch.ops.aten.convolution.default)
        log.append({"is_inference": is_inference, "convolutions": convs, "channels_last": bool(decision)})
        return decision
    GraphLowering.decide_layout_opt = staticmethod(decide)
    try:
        yield log
    finally:
        GraphLowering.decide_layout_opt = original


def count_syncs(fn) -> dict:
    """Host–device synchronisations during one call of fn, by the line that caused them: the innermost frame
    outside torch (the line of sdft_lite or of this bench that called the op), and torch's own line beside it."""
    places, inside = collections.Counter(), collections.Counter()

    def note(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            places[caller_outside_torch(traceback.extract_stack()[:-1])] += 1
            inside[f"{Path(filename).name}:{lineno}"] += 1

    torch.cuda.synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.cuda.set_sync_debug_mode("warn")   # setting the mode warns once itself: not counted
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = note     # restored when the block ends
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return {"count": sum(places.values()), "where": dict(places.most_common(12)),
            "torch_line": dict(inside.most_common(12))}


def caller_outside_torch(stack: list[traceback.FrameSummary]) -> str:
    """'file.py:line' of the innermost frame that is neither torch's nor the warnings machinery's."""
    torch_dir = str(Path(torch.__file__).parent)
    for frame in reversed(stack):
        if not frame.filename.startswith(torch_dir) and Path(frame.filename).name != "warnings.py":
            return f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno}"
    return "unknown"


CATEGORIES = (   # (category, pattern on the lower-cased kernel or op name), first match wins
    ("memcpy_memset", r"memcpy|memset"),
    ("conv_layout_transform", r"nchwtonhwc|nhwctonchw|nchw2nhwc|nhwc2nchw|transpose_?nchw|convert_?layout"),
    ("normalisation", r"group_norm|groupnorm|layer_norm|batch_norm|welford|rowwisemoments|computefusedparams"),
    ("attention", r"flash|fmha|attention|sdpa|softmax"),
    ("elementwise_fused", r"^triton_"),   # inductor's kernels (their names list the ops fused, e.g. a conv's bias)
    ("convolution", r"conv|fprop|dgrad|wgrad|implicit_?gemm|cudnn::|xmma_fprop"),
    ("gemm", r"gemm|nvjet|cutlass|matmul|\baten::mm\b|aten::addmm|aten::bmm|cublas"),
    ("optimizer_and_ema", r"adam|multi_tensor|foreach|lerp"),
    ("elementwise_fused", r"triton|elementwise|vectorized|reduce_kernel|cat_|index|copy|fill|silu|add|mul"),
)


def classify(name: str) -> str:
    lowered = name.lower()
    return next((category for category, pattern in CATEGORIES if re.search(pattern, lowered)), "other")


def profile_steps(step, steps: int, device: str, workdir: Path, table: str = "profile_table.txt") -> dict:
    """Kernel time by category over ``steps`` calls (device kernels on a GPU; CPU ops' self time on a CPU)."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    sync(device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    rows = []
    for event in prof.key_averages():
        if device == "cuda":
            on_device = str(getattr(event, "device_type", "")).endswith("CUDA")
            us = getattr(event, "self_device_time_total", None)
            us = getattr(event, "self_cuda_time_total", 0) if us is None else us
            if not on_device or us <= 0:
                continue
        else:
            us = event.self_cpu_time_total
            if not event.key.startswith("aten::") or us <= 0:
                continue
        rows.append((event.key, us / 1000 / steps, event.count // steps))
    total = sum(ms for _, ms, _ in rows) or 1.0
    by_category = collections.defaultdict(float)
    for name, ms, _ in rows:
        by_category[classify(name)] += ms
    text = prof.key_averages().table(sort_by="self_cuda_time_total" if device == "cuda" else "self_cpu_time_total",
                                      row_limit=60, max_name_column_width=90)
    (workdir.parent / table).write_text(text)
    rows.sort(key=lambda r: -r[1])
    nhwc = sum(ms for name, ms, _ in rows if classify(name) == "convolution" and "nhwc" in name.lower())
    conv = by_category.get("convolution", 0.0)
    return {"steps": steps, "kernel_ms_per_step": round(total, 2), "what": "device kernels" if device == "cuda"
            else "CPU aten ops (smoke)",
            "by_category_ms_per_step": {k: round(v, 2) for k, v in sorted(by_category.items(), key=lambda kv: -kv[1])},
            "by_category_share": {k: round(v / total, 3) for k, v in sorted(by_category.items(), key=lambda kv: -kv[1])},
            "convolution_ms_in_kernels_named_nhwc": round(nhwc, 2), "convolution_ms": round(conv, 2),
            "top_kernels": [{"name": name[:160], "ms_per_step": round(ms, 3), "calls_per_step": calls,
                             "category": classify(name)} for name, ms, calls in rows[:40]]}


def relative_differences(values: list[float], reference: list[float]) -> dict:
    """|a − b| / |b| step by step: how far a fast path's losses are from the plain path's on the same batches."""
    rel = [abs(a - b) / abs(b) for a, b in zip(values, reference)]
    return {"steps": len(rel), "mean_relative_difference": round(sum(rel) / len(rel), 6),
            "max_relative_difference": round(max(rel), 6), "fast": [round(v, 6) for v in values],
            "plain": [round(v, 6) for v in reference]}


def difference_from_eager(images: torch.Tensor, eager: torch.Tensor) -> dict:
    """How far a fast sampler's images are from the eager loop's, in [-1, 1] units: max, mean and the share of
    pixels off by more than one uint8 level (2/255). The bench's U-Net has random weights, which amplify any
    rounding difference over the 40 steps: there eager bf16 differs from eager fp32 as much (max 2.0, 99% of
    pixels; bench/sampling_agreement.py, which also compares the paths on a trained model)."""
    diff = (images - eager).abs()
    return {"max_abs_diff_vs_eager": round(float(diff.max()), 5),
            "mean_abs_diff_vs_eager": round(float(diff.mean()), 5),
            "share_off_by_more_than_one_level": round(float((diff > 2 / 255).float().mean()), 5)}


# ---- main -----------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder: speed.json, profile.json, profile_table.txt")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, in order: {', '.join(PHASES)}")
    parser.add_argument("--time-limit", type=float, default=0, help="start no phase after this many seconds (0: none)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--sample-batches", default=None, help="e.g. 64,128,256 (the first gets every mode)")
    parser.add_argument("--sample-modes", default=None, help=f"at the first batch size: {', '.join(SAMPLE_MODES)}")
    parser.add_argument("--large-batch-modes", default=None, help="at the larger batch sizes")
    parser.add_argument("--smoke", action="store_true", help="tiny settings on the CPU: checks the machinery")
    return parser.parse_args(argv)


def make_setup(args) -> Setup:
    setup = Setup.smoke() if args.smoke else Setup()
    changes = {k: v for k, v in dict(batch=args.batch, iters=args.iters, warmup=args.warmup).items() if v}
    for name in ("sample_batches", "sample_modes", "large_batch_modes"):
        value = getattr(args, name)
        if value:
            parts = tuple(value.split(","))
            changes[name] = tuple(int(p) for p in parts) if name == "sample_batches" else parts
    return dataclasses.replace(setup, **changes)


def header(setup: Setup, args) -> dict:
    cuda = setup.device == "cuda"
    return {"device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu", "commit": commit(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "command": " ".join(sys.argv), "smoke": args.smoke, "batch": setup.batch, "image_size": setup.size,
            "unet": setup.unet.to_flags(), "mfu_note": PEAK_NOTE, "issue_baseline_h200": ISSUE_BASELINE_H200,
            "targets": TARGETS, "counting": __doc__.split("Counting forward-equivalents")[1].strip()}


def run_phases(bench, record: Record, phases: list[str], time_limit: float, started: float) -> None:
    """Each phase in turn (``bench.<phase>_phase()``). One starting after ``time_limit`` seconds is skipped; one that
    raises is recorded under ``errors`` and the next still run. A phase stays under ``unfinished`` (with the second
    it started) until it ends, so a call stopped from outside (a device's time limit) leaves in speed.json which
    phase it stopped and how long that phase had run."""
    for phase in phases:
        elapsed = time.perf_counter() - started
        if time_limit and elapsed > time_limit:
            record.data["skipped"].append(phase)
            record.write()
            continue
        print(f"--- {phase} (at {elapsed:.0f} s)", flush=True)
        record.data["unfinished"][phase] = round(elapsed, 1)
        record.write()
        try:
            getattr(bench, f"{phase}_phase")()
        except Exception as error:   # a failing phase is recorded; the next ones still run
            record.data["errors"][phase] = error_text(error)
            traceback.print_exc()
        del record.data["unfinished"][phase]
        record.write()


def main(argv=None) -> int:
    args = parse_args(argv)
    setup = make_setup(args)
    phases = [p for p in args.phases.split(",") if p]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise SystemExit(f"unknown phases {unknown}; choose from {', '.join(PHASES)}")
    if setup.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    out_dir = Path(args.out)
    workdir = out_dir / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    record = Record(out_dir, header(setup, args))
    bench = Bench(setup, record, workdir)
    if "reference" not in phases and any(p != "sync_check" for p in phases):
        phases.insert(0, "reference")   # every figure is compared with the reference measured here
    run_phases(bench, record, phases, args.time_limit, started)
    record.data["wall_seconds"] = round(time.perf_counter() - started, 1)
    record.write()
    summary = {k: v for k, v in record.data.items() if k in ("device", "torch", "ratios", "skipped", "errors",
                                                              "wall_seconds")}
    print(json.dumps(summary, indent=2))
    for f in workdir.glob("*.pt"):
        f.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
