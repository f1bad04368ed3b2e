"""Loading and saving U-Net checkpoints: guided-diffusion / P2-weighting `.pt` files and our trainer's own.

Checkpoint compatibility is an interface: a guided-diffusion state dict (P2's `ffhq_p2.pt`, the SDFT source model)
loads with `strict=True` into `UNetModel`. Files are read with `torch.load(weights_only=True)`, so a checkpoint can
hold tensors and plain containers but never run pickled code. A missing published file raises `MissingWeightsError`
naming what it is, where to get it and where to put it; a file that does not fit the model raises one
`CheckpointMismatchError` listing the keys and the flags that probably differ; a file that cannot be loaded at
all (other bytes, a torn file, pickled code, the wrong structure) raises its subclass `UnreadableCheckpointError`,
one line naming the file, why and what to do. `reading` gives third-party loaders the same treatment.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from .config import home
from .unet import DEFAULT_CHANNEL_MULT, UNetConfig, UNetModel

# ---------------------------------------------------------------------------------------------------------------
# Known published weight files, and the error for a missing one


@dataclass(frozen=True)
class KnownWeights:
    """A published weight file: what it is, where to download it, where sdft_lite looks for it."""

    name: str
    what: str
    url: str  # the download page (or the file itself, when it has a stable URL)
    default_path: str  # relative to the working directory, and also looked up under $SDFT_LITE_HOME
    sha256: str | None = None  # checked on load when known


KNOWN_WEIGHTS: dict[str, KnownWeights] = {w.name: w for w in (
    KnownWeights("ffhq_p2.pt", "P2-weighting's FFHQ-256 ADM (93.6M parameters), the SDFT source model",
                 "https://github.com/jychoi118/P2-weighting (the README links the model folder)",
                 "models/ffhq_p2.pt"),
    KnownWeights("metface_p2.pt", "P2-weighting's MetFaces-256 ADM",
                 "https://github.com/jychoi118/P2-weighting (the README links the model folder)",
                 "models/metface_p2.pt"),
    KnownWeights("metface_distill.pt", "the SDFT authors' MetFaces fine-tuned ADM",
                 "https://github.com/JiwanHur/SDFT (the README links a Google Drive folder)",
                 "models/metface_distill.pt"),
    KnownWeights("face2portrait.pt", "EGSDE's domain-specific extractor for FFHQ vs MetFaces",
                 "https://github.com/JiwanHur/SDFT (the README links a Google Drive folder)",
                 "models/face2portrait.pt"),
)}  # the metrics' files (Inception, LPIPS backbones, CLIP, ArcFace) are listed in sdft_lite.metrics.weights


class MissingWeightsError(FileNotFoundError):
    """A weight or checkpoint file is absent. Fields: what, where_to_get, where_to_put (and the paths searched)."""

    def __init__(self, what: str, where_to_get: str, where_to_put: str, searched: tuple = ()):
        self.what, self.where_to_get, self.where_to_put = what, where_to_get, where_to_put
        self.searched = tuple(str(p) for p in searched)
        lines = [f"Missing file: {what}.", f"  Where to get it: {where_to_get}", f"  Where to put it: {where_to_put}"]
        if self.searched:
            lines.append(f"  Looked in: {', '.join(self.searched)}")
        super().__init__("\n".join(lines))

    @classmethod
    def for_known(cls, name: str, searched: tuple = ()) -> "MissingWeightsError":
        """The error for a file of `KNOWN_WEIGHTS`."""
        weights = KNOWN_WEIGHTS[name]
        put = " or ".join(str(p) for p in default_locations(name))
        return cls(f"{name} ({weights.what})", weights.url, put, searched)


def default_locations(name: str) -> list[Path]:
    """Where a known file is looked for: e.g. models/ffhq_p2.pt, then $SDFT_LITE_HOME/models/ffhq_p2.pt."""
    path = Path(KNOWN_WEIGHTS[name].default_path)
    return [path, home() / path]


def sha256_of(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_weights(name_or_path: str | Path) -> Path:
    """The existing file for a path, or for a known file name in its default locations; else MissingWeightsError."""
    path = Path(name_or_path).expanduser()
    known = KNOWN_WEIGHTS.get(path.name)
    candidates = [path] + ([p for p in default_locations(path.name) if p != path] if known else [])
    found = next((p for p in candidates if p.is_file()), None)
    if found is None and known:
        raise MissingWeightsError.for_known(path.name, searched=tuple(candidates))
    if found is None:
        raise MissingWeightsError(f"checkpoint '{path}'", "check the path, or write the file with the sdft_lite trainer",
                                  str(path.absolute()), searched=(path.absolute(),))
    if known and known.sha256 and sha256_of(found) != known.sha256:
        raise ValueError(f"{found} is not the published {known.name}: its sha256 differs from {known.sha256}")
    return found


# ---------------------------------------------------------------------------------------------------------------
# Reading checkpoints

PREFIXES_TO_STRIP = ("module.", "_orig_mod.")  # DDP and torch.compile wrappers


def read_checkpoint(path: str | Path) -> Any:
    """`torch.load(weights_only=True)` on CPU of a found file; refuses pickles that hold arbitrary objects."""
    return _load_found(find_weights(path))


def _load_found(path: Path) -> Any:
    try:
        with warnings.catch_warnings():  # a TorchScript file is refused below, in one line, not also warned about
            warnings.filterwarnings("ignore", message=".*TorchScript archive", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickled code, other bytes, a torn file: one error naming the file
        raise UnreadableCheckpointError(path, *_why(err)) from err


def _strip_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes shared by every key, nested ones too ('_orig_mod.module.')."""
    for prefix in PREFIXES_TO_STRIP:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            return _strip_prefixes({k[len(prefix):]: v for k, v in state_dict.items()})
    return dict(state_dict)


def state_dict_from(checkpoint: Any, which: str = "model") -> dict[str, torch.Tensor]:
    """The state dict in a loaded checkpoint: a bare one (guided-diffusion, P2) or `checkpoint[which]` (our trainer)."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"a checkpoint must be a dict, got {type(checkpoint).__name__}")
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return _strip_prefixes(checkpoint)
    if isinstance(checkpoint.get(which), Mapping):
        return _strip_prefixes(checkpoint[which])
    raise KeyError(f"no state dict under '{which}' in this checkpoint; its top-level keys are {sorted(checkpoint)}")


def load_state_dict_file(path: str | Path, which: str = "model") -> dict[str, torch.Tensor]:
    """Read a U-Net state dict from a bare `.pt` state dict or from our trainer's checkpoint (`which`: model/ema)."""
    checkpoint = read_checkpoint(path)
    with reading(path, NOT_A_UNET):
        return state_dict_from(checkpoint, which)


def stored_config(checkpoint: Any) -> UNetConfig | None:
    """The U-Net flags our trainer stores under 'unet_config' (a `UNetConfig.to_flags()` dict), if any."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("unet_config"), Mapping):
        return UNetConfig.from_flags(checkpoint["unet_config"])
    return None


# ---------------------------------------------------------------------------------------------------------------
# Inferring the U-Net flags from a state dict


def _block_children(state_dict: Mapping[str, torch.Tensor], group: str) -> dict[int, dict[int, set[str]]]:
    """{block index: {child index: parameter names under it}} for `input_blocks` or `output_blocks`."""
    blocks: dict[int, dict[int, set[str]]] = {}
    for key in state_dict:
        match = re.match(rf"{group}\.(\d+)\.(\d+)\.(.+)$", key)
        if match:
            block, child, rest = int(match[1]), int(match[2]), match[3]
            blocks.setdefault(block, {}).setdefault(child, set()).add(rest)
    return blocks


def infer_config(state_dict: Mapping[str, torch.Tensor], image_size: int | None = None) -> UNetConfig:
    """guided-diffusion flags read off a state dict's keys and shapes.

    Inferred: in_channels, num_channels, channel_mult, num_res_blocks, learn_sigma, the attention levels,
    use_scale_shift_norm, resblock_updown. Not in the weights, so assumed: 64 channels per attention head (ADM, P2),
    the legacy attention order, dropout 0. `image_size` only names the attention levels (resolution = size // ds);
    when not given it is the size whose default channel_mult matches, else 8 * 2^(levels - 1).
    """
    if any(k.startswith("label_emb") for k in state_dict):
        raise ValueError("this is a class-conditional ADM (it has label_emb); sdft_lite supports unconditional ones")
    first_conv, out_conv = state_dict["input_blocks.0.0.weight"], state_dict["out.2.weight"]
    num_channels, in_channels = state_dict["time_embed.0.weight"].shape[1], first_conv.shape[1]
    decoder = _block_children(state_dict, "output_blocks")
    upsamplers = [children[max(children)] for children in decoder.values()
                  if max(children) > 0 and "qkv.weight" not in children[max(children)]]
    num_levels = len(upsamplers) + 1
    num_res_blocks = len(decoder) // num_levels - 1
    encoder = _block_children(state_dict, "input_blocks")
    first_of_level = [1 + level * (num_res_blocks + 1) for level in range(num_levels)]
    widths = [state_dict[f"input_blocks.{i}.0.in_layers.2.weight"].shape[0] for i in first_of_level]
    channel_mult = tuple(w // num_channels if w % num_channels == 0 else w / num_channels for w in widths)
    attention_levels = [level for level, i in enumerate(first_of_level) if "qkv.weight" in encoder[i].get(1, ())]
    if image_size is None:
        defaults = [size for size, mult in DEFAULT_CHANNEL_MULT.items() if mult == channel_mult]
        image_size = defaults[0] if defaults else 8 * 2 ** (num_levels - 1)
    head_channels = 64 if attention_levels and all(widths[level] % 64 == 0 for level in attention_levels) else -1
    scale_shift = state_dict["middle_block.0.emb_layers.1.weight"].shape[0] == 2 * widths[-1]
    return UNetConfig(
        image_size=image_size, num_channels=num_channels, num_res_blocks=num_res_blocks, channel_mult=channel_mult,
        learn_sigma=out_conv.shape[0] == 2 * in_channels, in_channels=in_channels,
        attention_resolutions=",".join(str(image_size >> level) for level in attention_levels),
        num_heads=1, num_head_channels=head_channels, use_scale_shift_norm=scale_shift,
        resblock_updown=bool(upsamplers) and "in_layers.0.weight" in upsamplers[0])


# ---------------------------------------------------------------------------------------------------------------
# Checking and loading

INFERABLE_FLAGS = ("in_channels", "num_channels", "channel_mult", "num_res_blocks", "learn_sigma",
                   "attention_downsample_factors", "use_scale_shift_norm", "resblock_updown")


class CheckpointMismatchError(RuntimeError):
    """A state dict does not fit the model: lists missing, unexpected and mis-shaped keys and the likely flags."""

    def __init__(self, source: str, missing: list[str], unexpected: list[str],
                 mis_shaped: list[tuple[str, tuple, tuple]], hint: str, shown: int = 10):
        self.missing, self.unexpected, self.mis_shaped, self.hint = missing, unexpected, mis_shaped, hint
        lines = [f"{source} does not match the U-Net built from the config:"]
        for label, items in (("missing", missing), ("unexpected", unexpected)):
            if items:
                more = f", ... ({len(items) - shown} more)" if len(items) > shown else ""
                lines.append(f"  {label} keys ({len(items)}): {', '.join(items[:shown])}{more}")
        if mis_shaped:
            lines.append(f"  mis-shaped keys ({len(mis_shaped)}), model vs checkpoint:")
            lines += [f"    {k}: {list(want)} vs {list(got)}" for k, want, got in mis_shaped[:shown]]
        lines.append(f"  Hint: {hint}")
        super().__init__("\n".join(lines))


class UnreadableCheckpointError(CheckpointMismatchError):
    """A file sdft_lite cannot load safely: not a PyTorch file, truncated, pickled code, or the wrong structure.

    One line: the file, why, what to do. A CheckpointMismatchError, so every caller and the CLI treat both alike.
    """

    def __init__(self, path: str | Path, why: str, todo: str):
        why = " ".join(why.split()).rstrip(".")  # one line
        self.path, self.why, self.todo = Path(path), why, todo
        self.missing, self.unexpected, self.mis_shaped, self.hint = [], [], [], todo
        RuntimeError.__init__(self, f"{path} is not a checkpoint sdft-lite can load safely: {why}. {todo}")


CHECK_THE_FILE = "Check the path, or copy or download the file again"
NOT_A_UNET = "Pass a guided-diffusion U-Net state dict (e.g. ffhq_p2.pt) or a checkpoint written by sdft-lite"
TRUSTED_ONLY = ("If you trust its source, load it yourself and re-save only its tensors "
                "(torch.save(model.state_dict(), path))")
_FORCE_SAFE, _FORCE_UNSAFE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def _why(err: Exception, todo: str = CHECK_THE_FILE) -> tuple[str, str]:
    """(why, what to do) in one short line, for an error raised while loading a file."""
    text = str(err)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if isinstance(err, pickle.UnpicklingError) and refused:
        return (f"it holds pickled code ({refused[1]}), not only tensors and plain containers, and sdft-lite "
                "never runs pickled code (torch.load(weights_only=True))"), TRUSTED_ONLY
    if "TorchScript" in text:
        return "it is a TorchScript archive (a program), not a file of tensors", todo
    if isinstance(err, OSError) and err.strerror:
        return f"it cannot be read ({err.strerror})", todo
    key = err.args[0] if isinstance(err, KeyError) and err.args else None
    if isinstance(key, str) and " " in key:  # a sentence, e.g. state_dict_from's
        return key, todo
    if isinstance(key, str) and "." in key:  # e.g. a state dict without a key infer_config reads
        return f"it has no key {key!r}", todo
    torn = "zip archive" in text or "magic number" in text  # torch.load on a truncated or foreign file
    if torn or isinstance(err, (pickle.UnpicklingError, EOFError, KeyError)):
        return "it is not a PyTorch file, or it is truncated or corrupt", CHECK_THE_FILE
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)
    return (first_line if len(first_line) <= 300 else first_line[:297] + "..."), todo


@contextlib.contextmanager
def reading(path: str | Path, todo: str = CHECK_THE_FILE):
    """Around code that loads `path` (ours or a third party's): every torch.load inside is weights_only=True
    (torch's TORCH_FORCE_WEIGHTS_ONLY_LOAD), and any error becomes one UnreadableCheckpointError naming the file.
    Missing files and CheckpointMismatchError pass through unchanged."""
    saved = {name: os.environ.pop(name, None) for name in (_FORCE_SAFE, _FORCE_UNSAFE)}
    os.environ[_FORCE_SAFE] = "1"
    try:
        yield
    except (CheckpointMismatchError, FileNotFoundError):
        raise
    except Exception as err:
        raise UnreadableCheckpointError(path, *_why(err, todo)) from err
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _mismatch_hint(state_dict: Mapping[str, torch.Tensor], config: UNetConfig) -> str:
    """Which flags of `config` differ from those inferred from the state dict."""
    try:
        inferred = infer_config(state_dict, image_size=config.image_size)
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as err:
        first = ", ".join(list(state_dict)[:5])
        return f"the file does not look like a guided-diffusion U-Net state dict ({err!r}); its first keys: {first}"
    differ = [f"{name}: config {getattr(config, name)!r}, checkpoint looks like {getattr(inferred, name)!r}"
              for name in INFERABLE_FLAGS if getattr(config, name) != getattr(inferred, name)]
    if not differ:
        return "no flag difference found from the shapes; was the file written by a different architecture?"
    return "these flags probably differ: " + "; ".join(differ)


def check_state_dict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "the checkpoint"):
    """Raise one CheckpointMismatchError unless `state_dict` has exactly the model's keys and shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mis_shaped = [(k, tuple(v.shape), tuple(state_dict[k].shape)) for k, v in expected.items()
                  if k in state_dict and v.shape != state_dict[k].shape]
    if missing or unexpected or mis_shaped:
        hint = _mismatch_hint(state_dict, model.config) if hasattr(model, "config") else "check the model flags"
        raise CheckpointMismatchError(source, missing, unexpected, mis_shaped, hint)


def load_unet(path: str | Path, config: UNetConfig | None = None, which: str = "model",
              image_size: int | None = None) -> UNetModel:
    """Build a `UNetModel` and load a checkpoint into it strictly; returned on CPU in eval mode.

    The flags come from `config`, else from the checkpoint's stored 'unet_config' (our trainer), else they are
    inferred from the shapes (`infer_config`; right for ffhq_p2.pt and guided-diffusion's unconditional models).
    `which` picks 'model' or 'ema' in our trainer's checkpoints; a bare state dict is used as it is.
    """
    path = find_weights(path)
    checkpoint = _load_found(path)
    with reading(path, NOT_A_UNET):  # a wrong structure or a key infer_config needs: one error naming the file
        state_dict = state_dict_from(checkpoint, which)
        config = config or stored_config(checkpoint) or infer_config(state_dict, image_size)
        with torch.device("meta"):  # no time spent on a random init that the checkpoint overwrites
            model = UNetModel(config)
        check_state_dict(model, state_dict, source=str(path))
        state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}  # fp16 too
        model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------
# Saving


def save_atomic(obj: Any, path: str | Path) -> Path:
    """`torch.save` to a temp file beside `path`, flush and fsync, then `os.replace`: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened (Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
