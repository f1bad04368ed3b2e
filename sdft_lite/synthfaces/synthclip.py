"""SynthCLIP: a small image–text model of SynthFaces, a stand-in for CLIP where CLIP's weights cannot be had.

Asyrp (Kwon et al. 2023) edits with DiffusionCLIP's directional loss (Kim et al. 2022), which needs an image and a
text encoder in one space. SynthCLIP is CLIP (Radford et al. 2021) shrunk to the dataset: the attribute classifier's
``ConvNet`` + a projection for images, a two-layer pre-norm Transformer read at <eos> + a projection for text, a
learned temperature. It trains on fresh renders of both styles from its own random stream, captioned from their
exact labels (:mod:`.captions`), with UniCL's multiple positives (Yang et al. 2022): a caption that mentions only
the hair colour is a positive for every face of that colour in the batch.

A share of each batch is mildly damaged, and a share is replaced by what Asyrp's loss looks at: the diffusion
model's prediction P_t = x̂_0 from a noised render x_t, t ~ U[t_min, t_max] (the U-Net is the caller's, frozen).
The style of those faces counts as unknown: a photo model's x̂_0 of a noised portrait need not look painted.

    model, report = train_synthclip(SynthClipConfig.quick(), "cpu")      # or unet=source model, on a GPU
    delta_t = text_direction(model.encode_text, "a face", "a smiling face", SYNTHCLIP_TEMPLATES)
    model = load_synthclip()                                              # the shipped synthfaces/synthclip.pt
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import assets
from ..checkpoint import read_checkpoint, reading, save_atomic
from ..config import pick_device, quick_mode
from ..diffusion import call_model, predict_x0_from_eps, q_sample
from ..metrics.clip_direction import image_direction, text_direction
from ..schedule import Schedule, make_schedule
from .attributes import ATTRIBUTES, NUM_LEVELS, FaceLabels
from .captions import EOS, PAD, SYNTHCLIP_TEMPLATES, Tokenizer, captions_of, compatibility, level_prompts
from .classifier import two_style_renders
from .degrade import random_degradation
from .nets import ConvNet, as_model_input, default_workers, rendered_batches, step_rng
from .renderer import to_tensor

TRAIN_STREAM, HELDOUT_STREAM = "instruments/synthclip-train", "instruments/synthclip-heldout"
SHIPPED_SYNTHCLIP = "synthfaces/synthclip.pt"
KIND = "synthfaces-synthclip"
TRAIN_COMMAND = "sdft-lite synthfaces train-synthclip --out PATH"
STYLE_COLUMN = list(ATTRIBUTES).index("style")
PAIR_OFFSET = 1_000_000   # the direction check's faces: held-out stream, far from the accuracy check's


@dataclass(frozen=True)
class SynthClipConfig:
    """SynthCLIP's size and training recipe."""

    size: int = 32
    width: int = 32            # ConvNet width (features: 4·width)
    embed_dim: int = 128
    text_width: int = 128
    text_layers: int = 2
    heads: int = 4
    context: int = 32          # tokens per caption, <eos> included
    steps: int = 3000
    batch: int = 512
    lr: float = 2e-3
    weight_decay: float = 0.05
    mention_prob: float = 0.5  # each attribute named in a caption with this probability
    degrade_prob: float = 0.3  # share of the other faces mildly damaged
    denoise_prob: float = 0.25  # share of faces replaced by the U-Net's x̂_0 (when a U-Net is given)
    t_min: int = 200
    t_max: int = 600
    seed: int = 0

    @classmethod
    def quick(cls, size: int = 32) -> "SynthClipConfig":
        """A CPU run of about two minutes on 2 cores."""
        return cls(size=size, width=16, embed_dim=64, text_width=64, steps=300, batch=64, denoise_prob=0.125)

    @classmethod
    def full(cls, size: int = 32) -> "SynthClipConfig":
        """A GPU run of two to three minutes (the shipped model)."""
        return cls(size=size)


class SynthClip(nn.Module):
    """Image and text encoders into one D-dim space; the ``Encoders`` protocol of ``metrics.clip_direction``."""

    name = "synthclip"

    def __init__(self, config: SynthClipConfig, tokenizer: Tokenizer | None = None):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer or Tokenizer.default(config.context)
        self.image_backbone = ConvNet(config.width)
        self.image_projection = nn.Linear(self.image_backbone.feature_dim, config.embed_dim, bias=False)
        self.token_embedding = nn.Embedding(len(self.tokenizer), config.text_width)
        self.positions = nn.Parameter(0.01 * torch.randn(config.context, config.text_width))
        layer = nn.TransformerEncoderLayer(config.text_width, config.heads, 4 * config.text_width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.text_encoder = nn.TransformerEncoder(layer, config.text_layers, enable_nested_tensor=False)
        self.text_norm = nn.LayerNorm(config.text_width)
        self.text_projection = nn.Linear(config.text_width, config.embed_dim, bias=False)
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))   # CLIP's initial temperature

    def logit_scale(self) -> torch.Tensor:
        """exp(learned log-scale), clamped at 100 as CLIP does."""
        return self.log_logit_scale.exp().clamp(max=100.0)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] in [-1, 1] (resized to ``config.size``) → [B, D]. Keeps gradients (Asyrp trains
        through it)."""
        device = self.positions.device
        return self.image_projection(self.image_backbone(as_model_input(x, self.config.size, device, "-1..1")))

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: [N, L] (from ``self.tokenizer``) → [N, D], the last layer read at <eos>."""
        h = self.token_embedding(tokens) + self.positions[:tokens.shape[1]]
        h = self.text_norm(self.text_encoder(h, src_key_padding_mask=tokens == PAD))
        eos = (tokens == EOS).int().argmax(dim=1)
        return self.text_projection(h[torch.arange(len(tokens), device=tokens.device), eos])

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """N strings → [N, D]; words outside the vocabulary are read as <unk> (see :meth:`unknown_words`)."""
        return self.encode_tokens(self.tokenizer(list(texts)).to(self.positions.device))

    def unknown_words(self, texts: list[str]) -> list[str]:
        """The words of ``texts`` SynthCLIP does not know (sorted, once each)."""
        return self.tokenizer.unknown_words(texts)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(images), self.encode_tokens(tokens)


def unknown_words_message(model: SynthClip, texts: list[str]) -> str | None:
    """One line for a command to print when a prompt holds words outside SynthCLIP's vocabulary, else None."""
    words = model.unknown_words(texts)
    if not words:
        return None
    return (f"SynthCLIP does not know the words: {', '.join(words)} (it reads each as <unk>; "
            f"its vocabulary: {' '.join(model.tokenizer.vocabulary[3:])})")


# ---- the loss ------------------------------------------------------------------------------------------------

def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, compatible: torch.Tensor,
                     logit_scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP's symmetric contrastive loss (Radford et al. 2021) with multiple positives (UniCL, Yang et al. 2022).

    image_emb: [B, D], text_emb: [N, D] (normalised here); compatible: bool [B, N], M_ij = caption j is true of
    image i; logit_scale: the multiplier s (not its log). With logits z = s·cos(I_i, T_j):

      L = ½ [ mean_i CE(z_i·, M_i· / Σ_j M_ij) + mean_j CE(z_·j, M_·j / Σ_i M_ij) ]

    With M = identity it is CLIP's loss. Every row and every column of M needs a positive.
    """
    compatible = compatible.to(image_emb.device)
    if not (compatible.any(dim=1).all() and compatible.any(dim=0).all()):
        raise ValueError("every image and every caption needs at least one positive in `compatible`")
    logits = logit_scale * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T
    targets = compatible.to(logits.dtype)
    image_to_text = F.cross_entropy(logits, targets / targets.sum(dim=1, keepdim=True))
    text_to_image = F.cross_entropy(logits.T, (targets / targets.sum(dim=0, keepdim=True)).T)
    return (image_to_text + text_to_image) / 2


# ---- training data -------------------------------------------------------------------------------------------

def synthclip_batch(step: int, config: SynthClipConfig,
                    tokenizer: Tokenizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training batch ``step``: images [B, 3, S, S] in [-1, 1] (half photo, half portrait, some damaged), tokens
    [B, L] (one caption per face), compatible bool [B, B], timesteps [B] (t where the face is to be replaced by
    x̂_0, −1 elsewhere; those faces' style counts as unknown in ``compatible``)."""
    indices = np.arange(step * config.batch, (step + 1) * config.batch)
    images, labels = two_style_renders(indices, config.size, config.seed, TRAIN_STREAM)
    rng = step_rng(config.seed, step, "synthclip-batch")
    denoise = rng.random(len(indices)) < config.denoise_prob
    timesteps = np.where(denoise, rng.integers(config.t_min, config.t_max + 1, len(indices)), -1)
    if (~denoise).any():
        images[~denoise] = random_degradation(images[~denoise], rng, config.degrade_prob)
    texts, mentions = captions_of(labels, rng, config.mention_prob)
    table = labels.stack()
    table[denoise, STYLE_COLUMN] = -1
    return to_tensor(images), tokenizer(texts), compatibility(table, mentions), torch.from_numpy(timesteps)


@torch.no_grad()
def predicted_x0(unet: nn.Module, schedule: Schedule, images: torch.Tensor, timesteps: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """images [B, 3, H, W] in [-1, 1] with the faces where timesteps ≥ 0 replaced by P_t = x̂_0(x_t, t), clipped
    to [-1, 1] (x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, DDPM; x̂_0 from the U-Net's ε, as Asyrp's loss sees it)."""
    picked = (timesteps >= 0).nonzero().squeeze(1).to(images.device)
    if len(picked) == 0:
        return images
    x0, t = images[picked], timesteps.to(images.device)[picked]
    noise = torch.randn(x0.shape, generator=generator, device=images.device)
    x_t = q_sample(schedule, x0, t, noise)
    eps = call_model(unet, x_t, schedule, t)[:, :images.shape[1]]
    out = images.clone()
    out[picked] = predict_x0_from_eps(schedule, x_t, t, eps).clamp(-1, 1).to(images.dtype)
    return out


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: matrices and kernels decay; gains, biases, positions and the temperature do not (as CLIP)."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n != "positions"]
    keep = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and n != "positions")]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def train_synthclip(config: SynthClipConfig | None = None, device: str | torch.device | None = None,
                    unet: nn.Module | None = None, eval_images: int = 2000, direction_pairs: int = 200,
                    workers: int | None = None, log=print) -> tuple[SynthClip, dict]:
    """Train SynthCLIP on fresh captioned renders; return it (eval mode) and a report (zero-shot accuracy, the
    smile-direction check).

    config: default ``SynthClipConfig.full`` on a GPU, ``.quick`` on a CPU or in quick mode. unet: a frozen
    ε-prediction U-Net at the config's size (the SynthFaces source model) that makes x̂_0 for ``denoise_prob`` of
    each batch; it is moved to ``device``. Without one, no face is replaced (the report says so).
    """
    device = pick_device(str(device) if device else None)
    full = device.type == "cuda" and not quick_mode()
    config = config or (SynthClipConfig.full() if full else SynthClipConfig.quick())
    config = config if unet is not None else replace(config, denoise_prob=0.0)
    torch.manual_seed(config.seed)
    model = SynthClip(config).to(device)
    schedule = make_schedule()
    if unet is not None:
        unet = unet.to(device).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(decay_groups(model, config.weight_decay), lr=config.lr)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps)
    generator = torch.Generator(device).manual_seed(config.seed)
    workers = default_workers(device) if workers is None else workers
    make_batch = partial(synthclip_batch, config=config, tokenizer=model.tokenizer)
    started, losses = time.perf_counter(), []
    model.train()
    for step, (images, tokens, compatible, timesteps) in enumerate(rendered_batches(make_batch, config.steps,
                                                                                     workers)):
        images = images.to(device, non_blocking=True)
        if unet is not None:
            images = predicted_x0(unet, schedule, images, timesteps, generator)
        image_emb, text_emb = model(images, tokens.to(device, non_blocking=True))
        loss = contrastive_loss(image_emb, text_emb, compatible, model.logit_scale())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        if step % max(1, config.steps // 10) == 0 or step == config.steps - 1:
            losses.append(round(loss.item(), 4))
            if log:
                log(f"synthclip step {step:5d}/{config.steps} loss {losses[-1]:.4f} "
                    f"logit scale {model.logit_scale().item():.1f}")
    seconds = time.perf_counter() - started
    model.eval()
    report = {"config": asdict(config), "train_seconds": round(seconds, 1), "device": str(device),
              "denoiser": unet is not None, "logged_losses": losses,
              "logit_scale": round(model.logit_scale().item(), 2), "heldout_images": eval_images,
              "zero_shot": zero_shot_accuracy(model, eval_images, seed=config.seed + 1, unet=unet),
              "smile_direction": smile_direction_check(model, direction_pairs, seed=config.seed + 1)}
    return model, report


# ---- evaluation ----------------------------------------------------------------------------------------------

@torch.no_grad()
def image_embeddings(model: SynthClip, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Unit image embeddings [N, D] (on CPU) of images [N, 3, H, W] in [-1, 1]."""
    model.eval()
    parts = [F.normalize(model.encode_image(images[i:i + batch_size]), dim=-1).cpu()
             for i in range(0, len(images), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, model.config.embed_dim)


@torch.no_grad()
def level_embeddings(model: SynthClip, attribute: str) -> torch.Tensor:
    """[K, D] unit vectors, one per level of ``attribute``: the mean unit embedding of its prompts, normalised."""
    model.eval()
    rows = [F.normalize(model.encode_text(level_prompts(attribute, level)), dim=-1).mean(dim=0)
            for level in range(NUM_LEVELS[attribute])]
    return F.normalize(torch.stack(rows), dim=-1).cpu()


def zero_shot_predict(model: SynthClip, images: torch.Tensor) -> dict[str, np.ndarray]:
    """{attribute: predicted levels [N]}: per attribute, the level whose prompt embedding is closest (cosine)."""
    embeddings = image_embeddings(model, images)
    return {name: (embeddings @ level_embeddings(model, name).T).argmax(dim=1).numpy() for name in ATTRIBUTES}


def heldout_set(size: int, n: int, seed: int, kind: str = "clean", unet: nn.Module | None = None,
                t_range: tuple[int, int] = (200, 600)) -> tuple[torch.Tensor, FaceLabels]:
    """n held-out renders of both styles ([N, 3, H, W] in [-1, 1]): ``kind`` "clean", "damaged" (all mildly
    degraded) or "denoised" (every face replaced by the U-Net's x̂_0 at t ~ U[t_range], on the U-Net's device)."""
    images, labels = two_style_renders(np.arange(n), size, seed, HELDOUT_STREAM)
    if kind == "damaged":
        images = random_degradation(images, step_rng(seed, 0, "synthclip-heldout-damage"), prob=1.0)
    images = to_tensor(images)
    if kind == "denoised":
        rng = step_rng(seed, 0, "synthclip-heldout-denoise")
        timesteps = torch.from_numpy(rng.integers(t_range[0], t_range[1] + 1, n))
        device = next(unet.parameters()).device
        generator = torch.Generator(device).manual_seed(seed)
        images = torch.cat([predicted_x0(unet, make_schedule(), images[i:i + 256].to(device),
                                         timesteps[i:i + 256], generator).cpu() for i in range(0, n, 256)])
    return images, labels


def accuracy_table(predicted: dict[str, np.ndarray], labels: FaceLabels,
                   attributes=tuple(ATTRIBUTES)) -> dict[str, dict[str, float]]:
    """{"all" | "photo" | "portrait": {attribute: accuracy}}."""
    domains = {"all": np.ones(len(labels), bool), "photo": labels.style == 0, "portrait": labels.style == 1}
    return {domain: {name: float((predicted[name][mask] == getattr(labels, name)[mask]).mean()) for name in attributes}
            for domain, mask in domains.items()}


def zero_shot_accuracy(model: SynthClip, n: int = 2000, seed: int = 0,
                       unet: nn.Module | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Zero-shot accuracy on n held-out renders (half photos, half portraits): {kind: {domain: {attribute: acc}}}
    for kind "clean" and "damaged", and "denoised" (face attributes only) when a U-Net is given."""
    size, kinds = model.config.size, ("clean", "damaged") + (("denoised",) if unet is not None else ())
    table = {}
    for kind in kinds:
        images, labels = heldout_set(size, n, seed, kind, unet, (model.config.t_min, model.config.t_max))
        attributes = tuple(a for a in ATTRIBUTES if kind != "denoised" or a != "style")
        table[kind] = accuracy_table(zero_shot_predict(model, images), labels, attributes)
    return table


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half (the Mann–Whitney form of the ROC AUC)."""
    positive, negative = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float((positive > negative).mean() + 0.5 * (positive == negative).mean())


def face_pairs(n: int, size: int, seed: int, before: dict, after: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The same n held-out faces (half photos, half portraits) rendered with ``before`` and ``after`` forced
    levels: two tensors [N, 3, H, W] in [-1, 1]."""
    indices = np.arange(PAIR_OFFSET, PAIR_OFFSET + n)
    renders = [two_style_renders(indices, size, seed, HELDOUT_STREAM, fixed)[0] for fixed in (before, after)]
    return to_tensor(renders[0]), to_tensor(renders[1])


@torch.no_grad()
def smile_direction_check(model: SynthClip, n: int = 200, seed: int = 0, source_text: str = "a face",
                          target_text: str = "a smiling face") -> dict:
    """Does S_dir = cos(ΔI, ΔT) (DiffusionCLIP's directional similarity) see a smile?

    n pairs of the same face neutral → smiling, and n control pairs each of the same neutral face with another
    attribute changed (eyewear none → glasses; hair, skin: one level → another). ΔT: ``text_direction`` from
    ``source_text`` to ``target_text`` over SYNTHCLIP_TEMPLATES. Returns the mean S_dir of smile and control pairs
    and the ROC AUC separating them.
    """
    model.eval()
    size, rng = model.config.size, step_rng(seed, 0, "synthclip-control-levels")
    delta_t = text_direction(model.encode_text, source_text, target_text, SYNTHCLIP_TEMPLATES).cpu()

    def scores(before, after):
        x_before, x_after = face_pairs(n, size, seed, before, after)
        return np.concatenate([(image_direction(model.encode_image, x_before[i:i + 256], x_after[i:i + 256]).cpu()
                                @ delta_t).numpy() for i in range(0, n, 256)])

    smile = scores({"expression": 0}, {"expression": 1})
    controls = {"eyewear": scores({"expression": 0, "eyewear": 0}, {"expression": 0, "eyewear": 1})}
    for name in ("hair", "skin"):
        levels = rng.integers(NUM_LEVELS[name], size=n)
        other = (levels + rng.integers(1, NUM_LEVELS[name], size=n)) % NUM_LEVELS[name]
        controls[name] = scores({"expression": 0, name: levels}, {"expression": 0, name: other})
    control = np.concatenate(list(controls.values()))
    return {"source_text": source_text, "target_text": target_text, "pairs": n,
            "smile_sdir": float(smile.mean()), "control_sdir": float(control.mean()),
            "control_sdir_each": {name: float(v.mean()) for name, v in controls.items()},
            "auc": roc_auc(smile, control)}


def format_report(report: dict) -> str:
    """The zero-shot table (rows: kind/domain, columns: attributes) and the direction check, as text."""
    lines = [f"{'zero-shot accuracy':<22}" + "".join(f"{name:>11}" for name in ATTRIBUTES)]
    for kind, domains in report["zero_shot"].items():
        for domain, row in domains.items():
            cells = "".join(f"{row[name]:>11.3f}" if name in row else f"{'—':>11}" for name in ATTRIBUTES)
            lines.append(f"{kind + ' / ' + domain:<22}{cells}")
    check = report["smile_direction"]
    lines.append(f"S_dir '{check['source_text']}' → '{check['target_text']}' over {check['pairs']} pairs: "
                 f"smile {check['smile_sdir']:.3f}, controls {check['control_sdir']:.3f} "
                 f"({', '.join(f'{k} {v:.3f}' for k, v in check['control_sdir_each'].items())}), "
                 f"ROC AUC {check['auc']:.3f}")
    return "\n".join(lines)


# ---- saving and loading --------------------------------------------------------------------------------------

class SynthClipMissingError(FileNotFoundError):
    """No SynthCLIP file where one was asked for; the message (one line) says how to train one."""


def save_synthclip(model: SynthClip, path: str | Path) -> Path:
    """Write config, vocabulary and weights (kind "synthfaces-synthclip"), atomically."""
    checkpoint = {"kind": KIND, "config": asdict(model.config), "vocabulary": list(model.tokenizer.vocabulary),
                  "state_dict": model.state_dict()}
    return save_atomic(checkpoint, path)


def shipped_synthclip_path() -> Path:
    """The verified path of the shipped ``synthfaces/synthclip.pt``, or one SynthClipMissingError line."""
    if SHIPPED_SYNTHCLIP not in assets.REGISTRY or not (assets.ASSET_DIR / SHIPPED_SYNTHCLIP).is_file():
        raise SynthClipMissingError(f"SynthCLIP ({SHIPPED_SYNTHCLIP}) is not shipped with this copy of sdft_lite: "
                                    f"train one with `{TRAIN_COMMAND}` and pass it as load_synthclip(PATH)")
    return assets.asset_path(SHIPPED_SYNTHCLIP)


def load_synthclip(path: str | Path | None = None, device: str | torch.device = "cpu") -> SynthClip:
    """A saved SynthCLIP (eval mode) on ``device``; path None: the one shipped with the package."""
    path = shipped_synthclip_path() if path is None else Path(path).expanduser()
    if not path.is_file():
        raise SynthClipMissingError(f"no SynthCLIP file at {path}: train one with `{TRAIN_COMMAND}`")
    checkpoint = read_checkpoint(path)
    with reading(path, f"Pass a synthclip.pt written by `{TRAIN_COMMAND}`"):
        if checkpoint.get("kind") != KIND:
            raise ValueError("it is not a SynthCLIP checkpoint")
        config = SynthClipConfig(**checkpoint["config"])
        model = SynthClip(config, Tokenizer(tuple(checkpoint["vocabulary"]), config.context))
        model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()
