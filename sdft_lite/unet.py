"""ADM U-Net (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs"), checkpoint-compatible with guided-diffusion.

`UNetModel.state_dict()` matches guided-diffusion's `UNetModel` key for key and shape for shape, so P2-weighting's
`ffhq_p2.pt` (the SDFT source model, 93,563,910 parameters) and guided-diffusion's unconditional `.pt` files load
with `strict=True`. The module names are theirs: `time_embed`, `input_blocks`, `middle_block`, `output_blocks`, `out`.
The code is our own; guided-diffusion is used only as a test oracle.

Model contract: `model(x, t)` with x `[B, C, H, W]` and t `[B]` original timesteps (0..999) returns `[B, 2C, H, W]`
(learned sigma: eps, then the variance interpolation v) or `[B, C, H, W]`.
`encode`/`decode` split the forward at the middle block, whose output is Asyrp's h-space (`[B, 512, 8, 8]` at 256 px).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

# guided-diffusion's `create_model` picks these when `channel_mult=""`; 32 px is our addition for small models.
DEFAULT_CHANNEL_MULT = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
    32: (1, 2, 2, 2),
}

# guided-diffusion model flags that have no effect on our weights: fp16 is done with autocast instead.
IGNORED_FLAGS = ("use_fp16",)


def _parse_channel_mult(value: str | tuple, image_size: int) -> tuple:
    """'' -> the default for the image size; '1,2,2' or (1, 2, 2) -> (1, 2, 2); non-integers (0.5) stay floats."""
    if isinstance(value, str):
        if not value.strip():
            if image_size not in DEFAULT_CHANNEL_MULT:
                raise ValueError(f"no default channel_mult for image_size={image_size}; pass e.g. '1,2,2'")
            return DEFAULT_CHANNEL_MULT[image_size]
        value = [float(part) for part in value.split(",")]
    mults = tuple(int(m) if float(m).is_integer() else float(m) for m in value)
    if not mults or any(m <= 0 for m in mults):
        raise ValueError(f"channel_mult must be positive numbers, got {value!r}")
    return mults


def _parse_resolutions(value: str | tuple) -> str:
    """'32, 16,8' or (32, 16, 8) -> '32,16,8' (canonical guided-diffusion string; '' means no attention)."""
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return ",".join(str(int(p)) for p in parts if p.strip())


@dataclass(frozen=True)
class UNetConfig:
    """guided-diffusion's `create_model` flags (same names and meanings) plus `in_channels` and `prediction`."""

    image_size: int = 256
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: str | tuple = ""  # normalised to a tuple, e.g. (1, 1, 2, 2, 4, 4)
    learn_sigma: bool = False
    attention_resolutions: str = "16"  # feature-map sizes that get attention, e.g. "32,16,8"
    num_heads: int = 1
    num_head_channels: int = -1  # when > 0, overrides num_heads: heads = channels // num_head_channels
    num_heads_upsample: int = -1  # -1: same as num_heads
    use_scale_shift_norm: bool = False
    dropout: float = 0.0
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    use_checkpoint: bool = False
    in_channels: int = 3
    prediction: str = "eps"  # what the output's first C channels are: eps | v | x0 (old checkpoints: eps)

    def __post_init__(self):
        if self.prediction not in ("eps", "v", "x0"):
            raise ValueError(f"prediction must be eps, v or x0, got {self.prediction!r}")
        object.__setattr__(self, "channel_mult", _parse_channel_mult(self.channel_mult, self.image_size))
        object.__setattr__(self, "attention_resolutions", _parse_resolutions(self.attention_resolutions))
        sizes = [self.image_size >> level for level in range(len(self.channel_mult))]
        for resolution in self.attention_resolutions.split(",") if self.attention_resolutions else ():
            if int(resolution) not in sizes:
                raise ValueError(f"attention resolution {resolution} is not one of the feature-map sizes {sizes} "
                                 f"of a {self.image_size}-px U-Net with channel_mult={self.channel_mult}")

    @property
    def out_channels(self) -> int:
        return self.in_channels * (2 if self.learn_sigma else 1)

    @property
    def attention_downsample_factors(self) -> tuple[int, ...]:
        """Downsampling factors ds = image_size // resolution at which blocks get attention (guided-diffusion's)."""
        if not self.attention_resolutions:
            return ()
        return tuple(sorted(self.image_size // int(r) for r in self.attention_resolutions.split(",")))

    def replace(self, **changes) -> "UNetConfig":
        return dataclasses.replace(self, **changes)

    def to_flags(self) -> dict[str, Any]:
        """Plain flags dict (channel_mult as guided-diffusion's comma string; `prediction` only when not ε, so an
        ε-model's flags are exactly guided-diffusion's); `from_flags` inverts it."""
        flags = dataclasses.asdict(self)
        flags["channel_mult"] = ",".join(str(m) for m in self.channel_mult)
        if self.prediction == "eps":   # guided-diffusion's meaning when the flag is absent: its flags stay valid
            del flags["prediction"]
        return flags

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any], ignore_unknown: bool = False) -> "UNetConfig":
        """Build from guided-diffusion-style flags; `use_fp16` is ignored, `class_cond=True` is refused."""
        flags = dict(flags)
        if flags.pop("class_cond", False):
            raise ValueError("class-conditional ADM (class_cond=True, label_emb) is not supported by sdft_lite")
        for name in IGNORED_FLAGS:
            flags.pop(name, None)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(flags) - names)
        if unknown and not ignore_unknown:
            raise TypeError(f"unknown U-Net flags: {unknown}")
        return cls(**{k: v for k, v in flags.items() if k in names})

    @classmethod
    def ffhq256(cls) -> "UNetConfig":
        """P2-weighting's FFHQ-256 model (`ffhq_p2.pt`), the SDFT source model. Training uses `.replace(dropout=0.1)`."""
        return cls(image_size=256, num_channels=128, num_res_blocks=1, channel_mult="", learn_sigma=True,
                   attention_resolutions="16", num_heads=4, num_head_channels=64, num_heads_upsample=-1,
                   use_scale_shift_norm=True, dropout=0.0, resblock_updown=True, use_new_attention_order=False)

    @classmethod
    def tiny(cls) -> "UNetConfig":
        """A 0.83M-parameter U-Net with the FFHQ model's features (scale-shift, up/down ResBlocks, attention), for CPU tests."""
        return cls(image_size=32, num_channels=32, num_res_blocks=1, channel_mult=(1, 2), learn_sigma=True,
                   attention_resolutions="16", num_head_channels=32, use_scale_shift_norm=True, resblock_updown=True)

    @classmethod
    def demo32(cls) -> "UNetConfig":
        """A 1.37M-parameter 32-px U-Net: the SynthFaces source model small enough to fine-tune on a laptop CPU."""
        return cls(image_size=32, num_channels=32, num_res_blocks=1, channel_mult=(1, 2, 2), learn_sigma=True,
                   attention_resolutions="8", num_head_channels=32, use_scale_shift_norm=True, resblock_updown=True)

    @classmethod
    def small32(cls) -> "UNetConfig":
        """A 7.7M-parameter 32-px U-Net for SynthFaces on CPU/GPU (attention at 8x8)."""
        return cls(image_size=32, num_channels=64, num_res_blocks=2, channel_mult=(1, 2, 2), learn_sigma=True,
                   attention_resolutions="8", num_head_channels=32, use_scale_shift_norm=True, resblock_updown=True)

    @classmethod
    def small64(cls) -> "UNetConfig":
        """An 11M-parameter 64-px U-Net for SynthFaces on a GPU (attention at 16x16 and 8x8)."""
        return cls(image_size=64, num_channels=64, num_res_blocks=2, channel_mult=(1, 2, 2, 2), learn_sigma=True,
                   attention_resolutions="16,8", num_head_channels=32, use_scale_shift_norm=True, resblock_updown=True)


# the one table of U-Net presets, by name (the CLI's --unet-preset choices)
UNET_PRESETS = {"ffhq256": UNetConfig.ffhq256, "tiny": UNetConfig.tiny, "demo32": UNetConfig.demo32,
                "small32": UNetConfig.small32, "small64": UNetConfig.small64}

# ---------------------------------------------------------------------------------------------------------------
# Building blocks


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos(t f_i), sin(t f_i)], f_i = max_period^(-i/half). t: [B] -> [B, dim] float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(embedding, (0, dim % 2))


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups that computes in float32 and returns the input dtype (as ADM does)."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters, so a residual branch starts as the identity (ADM's `zero_module`)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """ADM residual block with timestep conditioning, optionally resampling ('up' / 'down') inside.

    x: [B, C_in, H, W]; emb: [B, E] -> [B, C_out, H', W'].
    With scale-shift norm: h = GN(h) * (1 + scale) + shift, where (scale, shift) come from the embedding.
    ``fused_norm`` (``use_fused_norm``): each normalisation with its SiLU runs as one Triton kernel
    (``fused_norm.group_norm_silu``, CUDA), the same function in float32.
    """

    fused_norm = False

    def __init__(self, channels: int, emb_channels: int, out_channels: int, dropout: float,
                 use_scale_shift_norm: bool, resample: str | None = None, use_checkpoint: bool = False):
        super().__init__()
        self.resample = resample
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        emb_out = 2 * out_channels if use_scale_shift_norm else out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else nn.Conv2d(channels, out_channels, 1))

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            return upsample_nearest2x(x)
        if self.resample == "down":
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        return x

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers[-1](self._resample(self._norm_silu(self.in_layers[0], x)))   # resample before the conv
        x = self._resample(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            h = self._norm_silu(self.out_layers[0], h, *emb_out.chunk(2, dim=1))
        else:
            h = self._norm_silu(self.out_layers[0], h + emb_out)
        return self.skip_connection(x) + self.out_layers[2:](h)   # dropout, conv

    def _norm_silu(self, norm: nn.GroupNorm, h: torch.Tensor, scale: torch.Tensor | None = None,
                   shift: torch.Tensor | None = None) -> torch.Tensor:
        """SiLU(GN(h) · (1 + scale) + shift), scale and shift [B, C, 1, 1] or None: ``norm`` and SiLU, or the
        fused kernel."""
        if self.fused_norm:
            from .fused_norm import group_norm_silu   # Triton: imported only when asked for
            rows = (scale.flatten(1), shift.flatten(1)) if scale is not None else (None, None)
            return group_norm_silu(h, norm.weight, norm.bias, norm.num_groups, *rows, eps=norm.eps)
        h = norm(h)
        return F.silu(h * (1 + scale) + shift if scale is not None else h)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)


def use_fused_norm(model: nn.Module, on: bool = True) -> nn.Module:
    """Every ResBlock of ``model`` normalises with the fused Triton kernels (``on``) or with torch's ops; the weights
    and the function are the same. CUDA (or Triton's interpreter)."""
    for block in model.modules():
        if isinstance(block, ResBlock):
            block.fused_norm = on
    return model


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H*W positions, residual: x + proj_out(attn(qkv(GN(x)))).

    x: [B, C, H, W] -> [B, C, H, W]. `qkv` is a 1x1 Conv1d C -> 3C. Legacy order splits heads first (channels
    [q_h0, k_h0, v_h0, q_h1, ...]); the new order splits q, k, v first. ADM scales q and k by ch^-1/4 each, which is
    the usual 1/sqrt(ch), the default scale of `scaled_dot_product_attention`.
    """

    def __init__(self, channels: int, num_heads: int, new_attention_order: bool, use_checkpoint: bool = False):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.new_attention_order = new_attention_order
        self.use_checkpoint = use_checkpoint
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_init(nn.Conv1d(channels, channels, 1))

    def _split_heads(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """qkv: [B, 3C, T] -> q, k, v each [B, heads, T, ch]."""
        b, width, length = qkv.shape
        ch = width // (3 * self.num_heads)
        if self.new_attention_order:
            q, k, v = (part.reshape(b, self.num_heads, ch, length) for part in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(b, self.num_heads, 3 * ch, length).split(ch, dim=2)
        return q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)  # [B, C, T]
        q, k, v = self._split_heads(self.qkv(self.norm(x)))
        attended = F.scaled_dot_product_attention(q, k, v)  # [B, heads, T, ch]
        attended = attended.transpose(-1, -2).reshape(b, c, -1)  # heads back onto channels, head-major
        return (x + self.proj_out(attended)).reshape(b, c, *spatial)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class Downsample(nn.Module):
    """Stride-2 3x3 conv (used when resblock_updown is False). [B, C, H, W] -> [B, C_out, H/2, W/2]."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.op(x)


def upsample_nearest2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2, as ``F.interpolate(x, scale_factor=2, mode="nearest")``: [B, C, H, W] -> [B, C, 2H, 2W].

    The values are the same bit for bit. On a CPU, torch's nearest kernel is slow on NCHW tensors (measured on 2
    cores: 96 ms for [128, 64, 16, 16], where two repeat_interleave copies take 14 ms; the 32-px U-Net's forward
    35% faster, forward + backward 30%), so CPUs take the copies; GPUs keep the single kernel. Under torch.compile
    every device takes a broadcast: inductor writes the gradient of ``F.interpolate`` as a scatter-add with atomics
    (``index_put``; on an H200 its two largest kernels took 3.4 ms of a 124-ms SDFT step, and atomics make the
    sums' order vary from run to run), and that of a broadcast as a plain sum of each 2x2 block.
    """
    if torch.compiler.is_compiling():
        b, c, h, w = x.shape
        return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)
    if x.device.type == "cpu":
        return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    return F.interpolate(x, scale_factor=2, mode="nearest")


class Upsample(nn.Module):
    """Nearest x2 then a 3x3 conv (used when resblock_updown is False). [B, C, H, W] -> [B, C_out, 2H, 2W]."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(upsample_nearest2x(x))


class EmbedSequential(nn.Sequential):
    """A Sequential whose blocks all take (h, emb); only ResBlocks use emb. The first input conv ignores it."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            h = layer(h) if isinstance(layer, nn.Conv2d) else layer(h, emb)
        return h


# ---------------------------------------------------------------------------------------------------------------
# The U-Net


class UNetModel(nn.Module):
    """ADM U-Net: encoder (`input_blocks`), bottleneck (`middle_block`), decoder with skips (`output_blocks`), `out`.

    forward: x [B, C, H, W], t [B] (original timesteps) -> [B, out_channels, H, W]; ``prediction`` (from the
    config) says whether the first C channels are ε, v or x0 (``sdft_lite.diffusion.call_model`` reads it).
    Runs under bf16/fp16 autocast (GroupNorm stays fp32) and with channels_last inputs; on an H100 the default
    contiguous layout trained faster in eager mode and under torch.compile (FFHQ-256, batch 16).
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        self.prediction = config.prediction
        base = config.num_channels
        self.emb_channels = 4 * base
        self.time_embed = nn.Sequential(nn.Linear(base, self.emb_channels), nn.SiLU(),
                                        nn.Linear(self.emb_channels, self.emb_channels))
        self.input_blocks, skip_channels, ch = self._build_encoder()
        self.middle_block = EmbedSequential(self._res_block(ch, ch), self._attention(ch, config.num_heads),
                                            self._res_block(ch, ch))
        self.output_blocks, ch = self._build_decoder(skip_channels, ch)
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(),
                                 zero_init(nn.Conv2d(ch, config.out_channels, 3, padding=1)))

    def _res_block(self, channels: int, out_channels: int, resample: str | None = None) -> ResBlock:
        c = self.config
        return ResBlock(channels, self.emb_channels, out_channels, c.dropout, c.use_scale_shift_norm,
                        resample, c.use_checkpoint)

    def _attention(self, channels: int, num_heads: int) -> AttentionBlock:
        c = self.config
        if c.num_head_channels > 0:
            if channels % c.num_head_channels:
                raise ValueError(f"{channels} channels are not a multiple of num_head_channels={c.num_head_channels}")
            num_heads = channels // c.num_head_channels
        return AttentionBlock(channels, num_heads, c.use_new_attention_order, c.use_checkpoint)

    def _resample(self, channels: int, direction: str) -> nn.Module:
        if self.config.resblock_updown:
            return self._res_block(channels, channels, resample=direction)
        return Downsample(channels, channels) if direction == "down" else Upsample(channels, channels)

    def _build_encoder(self) -> tuple[nn.ModuleList, list[int], int]:
        """Per level: num_res_blocks x (ResBlock [+ attention]), then a downsample except at the last level."""
        c = self.config
        ch = int(c.channel_mult[0] * c.num_channels)
        blocks = [EmbedSequential(nn.Conv2d(c.in_channels, ch, 3, padding=1))]
        skip_channels = [ch]
        for level, mult in enumerate(c.channel_mult):
            ds = 2 ** level
            for _ in range(c.num_res_blocks):
                layers = [self._res_block(ch, int(mult * c.num_channels))]
                ch = int(mult * c.num_channels)
                if ds in c.attention_downsample_factors:
                    layers.append(self._attention(ch, c.num_heads))
                blocks.append(EmbedSequential(*layers))
                skip_channels.append(ch)
            if level < len(c.channel_mult) - 1:
                blocks.append(EmbedSequential(self._resample(ch, "down")))
                skip_channels.append(ch)
        return nn.ModuleList(blocks), skip_channels, ch

    def _build_decoder(self, skip_channels: list[int], ch: int) -> tuple[nn.ModuleList, int]:
        """Per level, deepest first: (num_res_blocks + 1) x (ResBlock on [h; skip] [+ attention]), then upsample."""
        c = self.config
        num_heads_up = c.num_heads if c.num_heads_upsample == -1 else c.num_heads_upsample
        skips = list(skip_channels)
        blocks = []
        for level in reversed(range(len(c.channel_mult))):
            ds = 2 ** level
            out_ch = int(c.channel_mult[level] * c.num_channels)
            for i in range(c.num_res_blocks + 1):
                layers = [self._res_block(ch + skips.pop(), out_ch)]
                ch = out_ch
                if ds in c.attention_downsample_factors:
                    layers.append(self._attention(ch, num_heads_up))
                if level > 0 and i == c.num_res_blocks:
                    layers.append(self._resample(ch, "up"))
                blocks.append(EmbedSequential(*layers))
        return nn.ModuleList(blocks), ch

    def encode(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Run up to the bottleneck. x: [B, C, H, W]; t: [B] -> (h [B, C_mid, H/2^L, W/2^L], skips, emb [B, 4*ch]).

        h is the middle-block output, Asyrp's h-space ([B, 512, 8, 8] for the FFHQ-256 model).
        """
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(t, self.config.num_channels))
        h, skips = x, []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        return self.middle_block(h, emb), skips, emb

    def decode(self, h: torch.Tensor, skips: list[torch.Tensor], emb: torch.Tensor,
               x_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Run from the bottleneck to the output. `skips` is not modified, so it can be decoded twice (Asyrp)."""
        for block, skip in zip(self.output_blocks, reversed(skips)):
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.out(h.to(x_dtype))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h, skips, emb = self.encode(x, t)
        return self.decode(h, skips, emb, x.dtype)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
