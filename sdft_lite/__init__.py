"""sdft_lite: SDFT for diffusion models (Hur et al., WACV 2024) — schedules, an ADM U-Net compatible with
guided-diffusion checkpoints, samplers, the SDFT loss, a trainer, the SynthFaces benchmark and the paper's metrics.
"""
__version__ = "0.1.0"

from .config import quick_mode, seed_everything  # noqa: E402,F401
