"""Downstream uses of a fine-tuned diffusion model (SDFT paper Sec. 4.2–4.4): domain translation with SDEdit,
EGSDE and DDIB, shared-noise pairs of unconditional samples, and Asyrp's h-space editing.

Modules: ``sdedit`` (perturb-and-denoise), ``lowpass`` and ``dse`` (EGSDE's two feature extractors),
``egsde`` (energy-guided SDEdit), ``ddib`` (ODE bridges and paired samples), ``directions`` (CLIP or classifier
edit directions), ``asyrp`` (Δh training and editing), ``outputs`` (grids and the pairs/ layout), ``cli``.
"""
from .asyrp import AsyrpConfig, DeltaBlock, asyrp_sample, edit_images, train_delta_block
from .ddib import ddib_translate, paired_samples, save_pair_grid, save_pairs
from .directions import ClassifierDirection, ClipDirection, Direction
from .dse import EncoderClassifier, load_dse, save_dse, train_dse
from .egsde import EGSDEConfig, egsde_ancestral, egsde_ddim
from .lowpass import LowPass
from .sdedit import sdedit_ancestral, sdedit_ddim

__all__ = [
    "AsyrpConfig", "DeltaBlock", "asyrp_sample", "edit_images", "train_delta_block",
    "ddib_translate", "paired_samples", "save_pair_grid", "save_pairs",
    "ClassifierDirection", "ClipDirection", "Direction",
    "EncoderClassifier", "load_dse", "save_dse", "train_dse",
    "EGSDEConfig", "egsde_ancestral", "egsde_ddim",
    "LowPass",
    "sdedit_ancestral", "sdedit_ddim",
]
