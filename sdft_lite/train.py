"""The trainer: scratch, naive and SDFT fine-tuning in one readable loop (setup, resume, loop, sample, save).

- ``scratch``: random initialisation, the diffusion loss (L_simple + L_vb).
- ``naive``: initialised from the source model, the diffusion loss.
- ``sdft``: initialised from the source model, which is also kept frozen as the teacher; the SDFT loss.

A rival regulariser of :mod:`sdft_lite.rivals` (``TrainConfig.rival``: prior preservation, L2-SP, EWC, DDPM-PA's
pairwise loss) is built once at setup and adds its named terms to every micro-batch's loss.

Every random draw of step ``s`` (the batch, flips, t, ε, dropout, a rival's draws) is a pure function of
(seed, s, rank), so a run killed at any point and resumed from its last checkpoint reproduces the uninterrupted
run. Checkpoints are written atomically; a NaN/Inf loss stops the run before anything is saved, so the last good
checkpoint stays. With ``lora.rank`` > 0 only LoRA adapters train (``adapters``); the optimiser, clipping, EMA and
checkpoints cover ``trainable_parameters`` alone.

The loop (:meth:`Trainer.run`) reads in nanoGPT's order: resume, then per step train → log → save → sample; the
helpers live beside it: ``distributed`` (torchrun, DDP), ``run_folder`` (checkpoints to keep, resume, stale
files), ``run_log`` (log.jsonl and the progress bar), ``checkpoint`` (atomic, weights-only files).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import signal
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import checkpoint as ckpt
from . import figures, run_folder
from .adapters import LoRAConfig, add_lora, load_trainable_state_dict, merge_lora, trainable_parameters, trainable_state_dict
from .assets import asset_path
from .config import pick_device, pick_precision
from .data import ImageSet, batch_indices, held_on, load_image_folder, random_flip
from .distributed import init_distributed, replicas_identical, wrap_ddp
from .run_log import RunLog, peak_memory, read_log
from .rivals import ANCHORS_WEIGHTS, RivalConfig, build_regularizer
from .schedule import make_schedule
from .sdft import ImportanceAux, SDFTConfig, SkipLightAux, every_aux, sdft_losses
from .unet import UNetConfig, UNetModel, use_fused_norm
from .weighting import weighting_spec

MODES = ("scratch", "naive", "sdft")
SYNTHFACES_SOURCE = "synthfaces/source_demo32.pt"   # the shipped SynthFaces source model


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the message names the step and the last good checkpoint."""


class ConfigError(ValueError):
    """A setting the run cannot use (e.g. a batch that does not split over the GPUs); the CLI prints one line."""


class ResumeMismatchError(ValueError):
    """``--resume`` with settings that would change the data or noise stream of the stored run."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs, end to end: the U-Net (``unet``), the loss (``loss``), the optimisation and the
    run's files; stored in every checkpoint. An experiment is a preset plus overrides, e.g.
    ``TrainConfig.synthfaces_quick(mode="sdft", loss=SDFTConfig.symmetric(3.0))``.

    For ``scratch`` and ``naive`` the loss's λ are set to 0 (the teacher is not used), so two configs that train
    the same way are equal."""

    mode: str = "sdft"                        # scratch | naive | sdft
    data_dir: str = ""
    num_images: int = 0                       # use the first N images of the folder (0 = all)
    target_smile_share: float = 0.0           # SynthFaces zoo runs (no data_dir): smiling share of the limited target
    out_dir: str = "runs/sdft"
    source_checkpoint: str | None = None      # ffhq_p2.pt for the paper; required for naive / sdft
    unet: UNetConfig = field(default_factory=lambda: UNetConfig.ffhq256().replace(dropout=0.1))
    loss: SDFTConfig = field(default_factory=SDFTConfig.metfaces)
    lora: LoRAConfig = field(default_factory=LoRAConfig)   # rank 0: train every weight; rank r: LoRA adapters only
    rival: RivalConfig = field(default_factory=RivalConfig)   # a rival regulariser added to the loss (none: off)
    noise_schedule: str = "linear"
    # optimisation
    steps: int = 10_000
    batch_size: int = 16                      # global batch (all GPUs, all accumulation steps)
    grad_accum: int = 1
    lr: float = 2e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0                     # linear warm-up: lr · (step + 1) / warmup_steps for the first steps
    grad_clip: float = 0.0                    # 0 = off (the authors do not clip)
    ema_rate: float = 0.9999
    precision: str = "auto"                   # auto | fp32 | bf16 | fp16
    channels_last: bool = False               # CUDA: model, inputs channels_last; slower (H100 eager, H200 compiled)
    compile: bool = False                     # CUDA only: torch.compile (~3.5 min; 4.1x the reference, H200)
    compile_channels_last: bool = True        # compiled: every convolution channels-last (1.12x on an H200)
    aux_skip_below: float = 0.0               # skip aux samples with λ_aux·w_a(t) below this (0 = exact; eager only)
    aux_bucket: int = 4                       # kept aux samples rounded up to a multiple of this (batch shapes)
    aux_samples: int = 0                      # m > 0: m aux samples drawn by weight, reweighted (unbiased; compiles)
    teacher_stream: bool = False              # CUDA only: the teacher's forward on a side stream (same values)
    fused_norm: bool = False                  # CUDA: GroupNorm·scale-shift·SiLU in Triton (slower than inductor)
    data_on_device: bool = True               # CUDA only: the uint8 images held on the GPU when they fit (same batches)
    seed: int = 0
    # feedback and checkpoints
    log_every: int = 10
    save_every: int = 5000
    keep_last: int = 3                        # checkpoints kept, newest first; at least 1
    sample_every: int = 1000
    sample_num: int = 16
    sample_steps: str = "ddim40"
    progress: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode != "sdft" and self.loss.needs_teacher:
            object.__setattr__(self, "loss", dataclasses.replace(self.loss, lambda_distill=0.0, lambda_aux=0.0))
        if self.rival.active and self.mode == "scratch":
            raise ValueError(f"the {self.rival.method!r} rival regularises fine-tuning from a source model: use "
                             "--mode naive or sdft")
        if self.rival.method in ANCHORS_WEIGHTS and self.lora.rank:
            raise ValueError(f"the {self.rival.method!r} rival anchors the full weights to the source; with LoRA it "
                             "would anchor the adapters' random init: use it without --lora-rank")

    # ---- presets -------------------------------------------------------------------------------
    @classmethod
    def metfaces(cls, **overrides) -> "TrainConfig":
        """The authors' MetFaces run: ffhq_p2.pt, 256 px, AdamW 2e-5, global batch 16, λ_d 0.1, γ_d 3,
        λ_aux 0.1, γ_aux 50, dropout 0.1, 10k iterations (the reported values), DDIM-40 samples; compiled on
        GPUs, with 4 aux samples per batch drawn by weight (unbiased; 112.7 img/s against 74.7 for every aux sample
        on an H200, and the same λ = 3 retention on SynthFaces over three seeds; ``aux_samples=0`` is exact)."""
        base = dict(mode="sdft", data_dir="data/metfaces256", out_dir="runs/metfaces_sdft",
                    source_checkpoint="models/ffhq_p2.pt", loss=SDFTConfig.metfaces(), compile=True, aux_samples=4)
        return cls(**{**base, **overrides})

    @classmethod
    def aahq(cls, **overrides) -> "TrainConfig":
        """AAHQ subset (1,437 images): as MetFaces with λ_aux 0.3 (the value behind the paper's AAHQ numbers is
        not stated)."""
        base = dict(mode="sdft", data_dir="data/aahq256", out_dir="runs/aahq_sdft",
                    source_checkpoint="models/ffhq_p2.pt", loss=SDFTConfig.aahq(), compile=True, aux_samples=4)
        return cls(**{**base, **overrides})

    @classmethod
    def tiny(cls, **overrides) -> "TrainConfig":
        """A CPU-sized run for tests: the tiny U-Net at 32 px, 20 steps of 4 images, EMA rate 0.99."""
        base = dict(unet=UNetConfig.tiny().replace(dropout=0.1), steps=20, batch_size=4, lr=1e-4,
                    log_every=1, save_every=10, sample_every=0, sample_num=4, sample_steps="ddim10", ema_rate=0.99)
        return cls(**{**base, **overrides})

    @classmethod
    def synthfaces_full(cls, **overrides) -> "TrainConfig":
        """Fine-tuning the shipped SynthFaces source model (the demo32 U-Net) on 1,300 limited-target portraits,
        as the book's GPU benchmark does: 800 steps of batch 128 at lr 1e-4, EMA 0.999, SDFT λ_d = λ_aux = 1,
        auxiliary samples of negligible weight (< 1e-6) skipped. The data is rendered in memory by
        ``experiments.zoo`` (no data_dir)."""
        base = dict(mode="sdft", num_images=1300, source_checkpoint=str(asset_path(SYNTHFACES_SOURCE)),
                    unet=UNetConfig.demo32().replace(dropout=0.1), loss=SDFTConfig.symmetric(1.0), steps=800,
                    batch_size=128, lr=1e-4, ema_rate=0.999, aux_skip_below=1e-6, save_every=0, sample_every=0,
                    progress=False)
        return cls(**{**base, **overrides})

    @classmethod
    def synthfaces_quick(cls, **overrides) -> "TrainConfig":
        """The CPU-sized version of :meth:`synthfaces_full`: 150 steps of batch 32 at lr 3e-4 (about 1 and 4
        minutes for naive and SDFT on 2 cores); the chapters' quick mode and the demo."""
        return cls.synthfaces_full(**{"steps": 150, "batch_size": 32, "lr": 3e-4, **overrides})

    def to_dict(self) -> dict:
        """Plain JSON-able values: the U-Net as guided-diffusion flags, weightings as their specs ('p2:3:1')."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["unet"] = self.unet.to_flags()
        d["lora"] = {**dataclasses.asdict(self.lora), "targets": list(self.lora.targets)}
        d["rival"] = dataclasses.asdict(self.rival)
        d["loss"] = {f.name: weighting_spec(v) if callable(v) else v
                     for f in dataclasses.fields(self.loss) for v in [getattr(self.loss, f.name)]}
        return d

    def check_resumable_from(self, stored: dict) -> None:
        """Refuse to resume a run whose data or noise stream would differ: the promise that a resumed run equals
        the uninterrupted one holds only for the same values of :data:`STREAM_FIELDS`."""
        mine = self.to_dict()
        differ = [f"{name}: stored {stored.get(name)!r}, now {mine[name]!r}" for name in STREAM_FIELDS
                  if name in stored and stored[name] != mine[name]]
        if differ:
            raise ResumeMismatchError(f"cannot resume {self.out_dir}: {'; '.join(differ)} (these change the data "
                                      "or noise stream); use the stored values or another --out-dir")


# the fields that decide which images, flips, t, ε and dropout masks each step draws
STREAM_FIELDS = ("mode", "data_dir", "num_images", "target_smile_share", "seed", "batch_size", "grad_accum",
                 "noise_schedule", "unet", "loss", "rival", "aux_samples")


def compile_options(config: TrainConfig) -> dict | None:
    """torch.compile's inductor options for the student and teacher. Inductor declines channels-last for the ADM
    U-Net's training graph (some convolutions have twice as many input as output channels), so cuDNN transposes
    NCHW tensors around its NHWC kernels; ``compile_channels_last`` forces the layout instead."""
    return {"force_layout_optimization": True} if config.compile_channels_last else None


# ---- models ----------------------------------------------------------------------------------------
def build_models(config: TrainConfig) -> tuple[UNetModel, UNetModel | None]:
    """(student, teacher): the student from the source checkpoint (naive / sdft) or random (scratch); the
    teacher is a frozen copy of the source, only for sdft."""
    if config.mode == "scratch":
        if config.lora.rank:
            raise ValueError("LoRA adapts a pretrained model: use --mode naive or sdft with --lora-rank")
        with torch.random.fork_rng(devices=[]):   # the initial weights are a function of the seed alone
            torch.manual_seed(config.seed)
            return UNetModel(config.unet), None
    if not config.source_checkpoint:
        raise ValueError(f"mode {config.mode!r} needs --source-checkpoint (the model to fine-tune)")
    source = ckpt.load_unet(config.source_checkpoint, config.unet)
    teacher = copy.deepcopy(source).eval().requires_grad_(False) if config.mode == "sdft" else None
    with torch.random.fork_rng(devices=[]):   # the adapters' random init is a function of the seed alone
        torch.manual_seed(config.seed)
        return add_lora(source, config.lora).train(), teacher




def aux_selector(config: TrainConfig):
    """Which auxiliary samples a step computes: all (exact), the heavy ones (``aux_skip_below``) or ``aux_samples``
    drawn by weight (an unbiased estimate with a fixed shape)."""
    if config.aux_samples < 0 or (config.aux_samples and config.aux_skip_below > 0):
        raise ConfigError(f"aux_samples must be >= 0 and cannot be combined with aux_skip_below (got "
                          f"{config.aux_samples} and {config.aux_skip_below})")
    if config.aux_samples:
        return ImportanceAux(config.aux_samples)
    return SkipLightAux(config.aux_skip_below, config.aux_bucket) if config.aux_skip_below > 0 else every_aux


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """The generator for everything random in one step of one rank."""
    return torch.Generator(device).manual_seed((seed * 1_000_003 + step) * 1009 + rank)


class Trainer:
    """Holds the run's state; :meth:`run` trains to ``config.steps`` and returns the final metrics."""

    def __init__(self, config: TrainConfig, device: str | None = None, data: ImageSet | None = None):
        self.config = config
        self.dist = init_distributed()
        self.device = pick_device(device)
        if self.device.type == "cuda" and self.dist.world > 1:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.out_dir = Path(config.out_dir)
        self.precision = pick_precision(self.device) if config.precision == "auto" else \
            {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[config.precision]
        if config.batch_size % (self.dist.world * config.grad_accum):
            raise ConfigError(f"batch_size {config.batch_size} must divide by GPUs × grad_accum "
                             f"({self.dist.world} × {config.grad_accum})")
        run_folder.check_keep_last(config.keep_last)
        if config.mode != "scratch" and config.source_checkpoint:
            ckpt.find_weights(config.source_checkpoint)   # a missing source model is reported before data loading
        self.data = data if data is not None else load_image_folder(config.data_dir, config.unet.image_size,
                                                                     limit=config.num_images or None)
        if config.data_on_device:
            self.data = held_on(self.data, self.device)
        self.schedule = make_schedule(config.noise_schedule).to(self.device)   # tables on the device: no copies
        self.teacher_stream = torch.cuda.Stream(self.device) \
            if config.teacher_stream and self.device.type == "cuda" and config.mode == "sdft" else None
        self.select_aux = aux_selector(config)
        self._build()
        self.step = 0
        self.first_bad_step = torch.tensor(-1, device=self.device)   # the first step whose loss was not finite
        self.stop_requested = False

    # ---- setup -----------------------------------------------------------------------------------
    def _build(self):
        config, device = self.config, self.device
        student, teacher = build_models(config)
        memory_format = torch.channels_last if (config.channels_last and device.type == "cuda") else None
        self.memory_format = memory_format
        self.model = student.to(device, memory_format=memory_format)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.teacher = None
        if teacher is not None:   # a half-precision inference copy on GPUs (the authors' fp16 teacher)
            teacher_dtype = self.precision if device.type == "cuda" else torch.float32
            self.teacher = _CastInputs(teacher.to(device, dtype=teacher_dtype, memory_format=memory_format))
        if config.fused_norm and device.type == "cuda":   # the training forward passes; the EMA samples as before
            use_fused_norm(self.model)
            if teacher is not None:
                use_fused_norm(teacher)
        try:   # from the source weights, before DDP, compiling or a resume
            self.regularizer = build_regularizer(config, self.model, self.teacher, self.schedule, device,
                                                 self.dist.rank, self.dist.world)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        self.ddp_model = wrap_ddp(self.model, self.dist, device)
        if config.compile and device.type == "cuda":
            self._compile()
        fused = device.type == "cuda"
        self.optimizer = torch.optim.AdamW(trainable_parameters(self.model), lr=config.lr,
                                           weight_decay=config.weight_decay, fused=fused)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == torch.float16)

    def _compile(self):
        """torch.compile the student (and the teacher) for one static batch shape. Skipping auxiliary samples
        changes the batch shape from step to step, and every new shape recompiles (minutes each), so a compiled
        run with skipping computes every auxiliary sample instead; ``aux_samples`` (m drawn by weight) keeps one
        shape and stays. Measured on an H200 with the presets' settings: 129 img/s, 4.1x a straightforward step
        in the same process (bench/results/speed_h200/, the README's GPU section)."""
        if isinstance(self.select_aux, SkipLightAux):
            print("--compile: computing every auxiliary sample (aux_skip_below ignored: one static batch shape)")
            self.select_aux = every_aux
        options = compile_options(self.config)
        self.ddp_model = torch.compile(self.ddp_model, options=options)
        if self.teacher is not None:
            self.teacher = torch.compile(self.teacher, options=options)

    # ---- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict:
        return {"model": trainable_state_dict(self.model), "ema": trainable_state_dict(self.ema),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "step": self.step, "config": self.config.to_dict(), "unet_config": self.config.unet.to_flags()}

    def check_finite(self) -> None:
        """Stop, naming the step, if any loss since the last check was NaN or infinite. The step itself does not
        read the loss back (that would wait for the GPU every step); this runs before each save and log line, so a
        diverged run never writes a checkpoint and the last good one stays the newest."""
        first = int(self.first_bad_step)
        if first >= 0:
            kept = run_folder.checkpoint_paths(self.out_dir)
            raise TrainingDiverged(
                f"loss is not finite (NaN or inf) at step {first}; stopped without saving. The last good checkpoint "
                f"is {kept[-1] if kept else 'none (no checkpoint was written yet)'}; try a lower --lr or "
                f"--precision fp32")

    def save(self) -> Path | None:
        self.check_finite()
        if not self.dist.main:
            return None
        path = ckpt.save_atomic(self.state(), self.out_dir / f"ckpt_{self.step:07d}.pt")
        run_folder.prune_checkpoints(self.out_dir, self.config.keep_last, keep=[path])
        return path

    def resume(self, path: str | Path | None = None, if_present: bool = False) -> bool:
        """Continue from ``path``, else from the newest checkpoint in out_dir: an error when there is none, unless
        ``if_present`` (then False). Read with the one safe loader; see :mod:`sdft_lite.run_folder`."""
        path = Path(path) if path else run_folder.checkpoint_to_resume(self.out_dir, if_present)
        if path is None:
            return False
        state = run_folder.read_resume_state(path)
        self.config.check_resumable_from(state.get("config", {}))
        load_trainable_state_dict(self.model, state["model"], source=f"{path} (model weights)")
        load_trainable_state_dict(self.ema, state["ema"], source=f"{path} (EMA weights)")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.first_bad_step.fill_(-1)
        return True

    # ---- one step --------------------------------------------------------------------------------
    def _lr(self) -> float:
        warmup = self.config.warmup_steps
        return self.config.lr * min(1.0, (self.step + 1) / warmup) if warmup else self.config.lr

    def _batch(self, micro: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x0, t, noise) of this rank's micro-batch ``micro`` of the current step."""
        return self._batch_and_generator(micro)[:3]

    def _batch_and_generator(self, micro: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator]:
        """(x0, t, noise, generator): the generator continues the micro-batch's stream for the regulariser."""
        c, d = self.config, self.dist
        per_micro = c.batch_size // (d.world * c.grad_accum)
        index = batch_indices(len(self.data), c.batch_size, self.step, c.seed)
        index = index.reshape(c.grad_accum, d.world, per_micro)[micro, d.rank]
        gen = step_generator(c.seed, self.step * c.grad_accum + micro, d.rank, self.device)
        x0 = random_flip(self.data.batch(index, self.device), gen)
        t = torch.randint(0, len(self.schedule), (per_micro,), generator=gen, device=self.device)
        noise = torch.randn(x0.shape, generator=gen, device=self.device)
        if self.memory_format is not None:
            x0, noise = x0.contiguous(memory_format=self.memory_format), noise.contiguous(memory_format=self.memory_format)
        return x0, t, noise, gen

    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimiser step. Returns the step's loss terms as 0-dim float64 tensors on the device, read back only
        where they are logged: nothing in the step waits for the GPU."""
        c = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr()
        torch.manual_seed((c.seed * 7919 + self.step) * 1009 + self.dist.rank)   # dropout
        autocast = torch.autocast(self.device.type, dtype=self.precision) \
            if self.precision != torch.float32 else nullcontext()
        totals: dict[str, torch.Tensor] = {}
        for micro in range(c.grad_accum):
            x0, t, noise, gen = self._batch_and_generator(micro)
            sync = nullcontext() if micro == c.grad_accum - 1 or self.dist.world == 1 else self.ddp_model.no_sync()
            with sync:
                with autocast:
                    terms = sdft_losses(self.ddp_model, self.teacher, self.schedule, x0, t, noise, c.loss,
                                        c.unet.prediction, self.select_aux, gen, self.teacher_stream)
                    if self.regularizer is not None:   # named terms ([B] or scalar), already weighted
                        for name, value in self.regularizer(self.model, x0, t, noise, gen, self.step, micro).items():
                            terms[name] = value
                            terms["loss"] = terms["loss"] + value
                loss = terms["loss"].mean() / c.grad_accum
                self.scaler.scale(loss).backward()
            for name, value in terms.items():   # float64, as Python floats summed them: the logged values stay
                totals[name] = totals.get(name, 0.0) + value.detach().mean().double() / c.grad_accum
        bad = ~torch.isfinite(totals["loss"]) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(bad, self.step, self.first_bad_step)
        if c.grad_clip:
            self.scaler.unscale_(self.optimizer)
            totals["grad_norm"] = torch.nn.utils.clip_grad_norm_(trainable_parameters(self.model), c.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self._update_ema()
        self.step += 1
        return totals

    @torch.no_grad()
    def _update_ema(self):
        """ema ← ema + (1 − rate)(θ − ema) for every trained parameter (frozen base weights never differ)."""
        torch._foreach_lerp_(trainable_parameters(self.ema), trainable_parameters(self.model),
                             1.0 - self.config.ema_rate)

    # ---- feedback --------------------------------------------------------------------------------
    def sample_grid(self) -> Path | None:
        """DDIM samples from the same fixed x_T at every call (raw weights), saved as a grid PNG."""
        if not self.dist.main or not self.config.sample_num:
            return None
        from .sample import save_grid, generate
        images = generate(self.model, self.config.sample_num, self.config.unet.image_size, self.config.sample_steps,
                          seed=self.config.seed + 12345, batch_size=self.config.sample_num, device=self.device,
                          schedule_name=self.config.noise_schedule)
        self.model.train()
        return save_grid(images, self.out_dir / "samples" / f"step_{self.step:07d}.png")

    def request_stop(self, signum=None, frame=None) -> None:
        """Finish the current step, save and return (what SIGINT and SIGTERM do during :meth:`run`)."""
        self.stop_requested = True

    # ---- the loop --------------------------------------------------------------------------------
    def run(self, resume: bool | str = False, resume_from: str | Path | None = None) -> dict:
        """Train to config.steps. ``resume``: True continues the newest checkpoint in out_dir (an error when there
        is none), "auto" continues it when there is one; ``resume_from``: the checkpoint file to continue from."""
        c = self.config
        if resume or resume_from:
            resumed = self.resume(resume_from, if_present=resume == "auto")
            if not resumed and self.dist.main:
                print(f"--resume auto: no checkpoint in {self.out_dir}, starting a new run")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.main:
            run_folder.remove_stale_temp_files(self.out_dir)
            (self.out_dir / "config.json").write_text(json.dumps(c.to_dict(), indent=2))
        last = {}
        with stop_on_signals(self.request_stop), RunLog(self.out_dir, c.log_every, c.steps, self.step, c.batch_size,
                                                        self.device, self.dist.main, c.progress, c.mode) as log:
            while self.step < c.steps and not self.stop_requested:
                last = self.train_step()
                if log.logs(self.step):
                    self.check_finite()
                log.step(self.step, last, self._lr())
                if c.save_every and self.step % c.save_every == 0:
                    self.save()
                if c.sample_every and self.step % c.sample_every == 0:
                    self.sample_grid()
            self.save()
        last = {name: float(value) for name, value in last.items()}
        result = {"step": self.step, "stopped_early": self.stop_requested, **last, **peak_memory(self.device)}
        if self.dist.world > 1:
            result["replicas_identical"] = replicas_identical(self.model, self.dist)
        if self.dist.main and not self.stop_requested:
            figures.save(figures.loss_curves(read_log(self.out_dir / "log.jsonl")), self.out_dir / "loss.png", dpi=100)
        return result

    def replicas_identical(self) -> bool:
        """True when every rank holds bit-identical weights."""
        return replicas_identical(self.model, self.dist)


class _CastInputs(torch.nn.Module):
    """Runs a frozen model in its own dtype (e.g. a bf16 teacher) and returns float32 outputs."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.dtype = next(model.parameters()).dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype), t).float()


@contextmanager
def stop_on_signals(handler):
    """Route SIGINT and SIGTERM to ``handler`` inside the block; the previous handlers come back afterwards."""
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def load_trained(path: str | Path, which: str = "model") -> UNetModel:
    """The model of a training checkpoint (raw or EMA weights), or of any file ``checkpoint.load_unet`` reads.
    A LoRA run's checkpoint holds only the adapters: they are added to its source model and merged, so the result
    is a plain U-Net with guided-diffusion's keys."""
    state = ckpt.read_checkpoint(path)
    lora = state.get("config", {}).get("lora", {}) if isinstance(state, dict) else {}
    if not lora.get("rank"):
        return ckpt.load_unet(path, which=which)
    config = state["config"]
    base = ckpt.load_unet(config["source_checkpoint"], UNetConfig.from_flags(config["unet"]))
    adapted = add_lora(base, LoRAConfig(**{**lora, "targets": tuple(lora["targets"])}))
    load_trainable_state_dict(adapted, state[which], source=f"{path} ({which} adapters)")
    return merge_lora(adapted).eval()


def train(config: TrainConfig, device: str | None = None, resume: bool | str = False,
          data: ImageSet | None = None, resume_from: str | Path | None = None) -> dict:
    """Train a model from a config; see :class:`TrainConfig` and its presets, and :meth:`Trainer.run` for resuming."""
    if resume and not resume_from:   # a missing run folder is reported before data loading
        run_folder.checkpoint_to_resume(config.out_dir, if_present=resume == "auto")
    return Trainer(config, device, data).run(resume=resume, resume_from=resume_from)
