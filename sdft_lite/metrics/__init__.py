"""The paper's metrics (SDFT, Hur et al. WACV 2024, §4): FID and KID×10³ (clean-fid), LPIPS (VGG), PSNR and SSIM
on luma, directional CLIP similarity S_dir and ArcFace identity similarity; and, for few-shot models, intra-cluster
LPIPS (diversity, Ojha et al. 2021) and nearest-training-image memorisation (Gu et al. 2023).

Each metric names the network that produced it, and numbers from different networks are never presented as
comparable. Nothing here downloads weights: a missing file raises ``MissingWeightsError`` (see ``weights.py``).
Images are tensors ``[N, 3, H, W] in [-1, 1]`` or folders of image files.
"""
from sdft_lite.metrics.clip_direction import (IMAGENET_TEMPLATES, ClipEncoders, SdirResult, compute_sdir,
                                              directional_similarity)
from sdft_lite.metrics.distances import Distance, feature_distance, lpips_distance, lpips_embedding, pixel_l2
from sdft_lite.metrics.diversity import DiversityResult, intra_cluster_distance
from sdft_lite.metrics.fid import (FIDResult, KIDResult, available_extractors, compute_fid, compute_fid_kid,
                                   compute_kid, register_extractor)
from sdft_lite.metrics.fidelity import FidelityResult, compute_fidelity, psnr, ssim
from sdft_lite.metrics.identity import IRSE50, IdentityResult, compute_identity, load_arcface
from sdft_lite.metrics.memorisation import MemorisationReport, NearestTraining, memorisation_report
from sdft_lite.metrics.perceptual import LPIPSResult, build_lpips, compute_lpips
from sdft_lite.metrics.weights import MissingWeightsError

__all__ = [
    "IMAGENET_TEMPLATES", "ClipEncoders", "SdirResult", "compute_sdir", "directional_similarity",
    "FIDResult", "KIDResult", "available_extractors", "compute_fid", "compute_fid_kid", "compute_kid",
    "register_extractor", "FidelityResult", "compute_fidelity", "psnr", "ssim", "IRSE50", "IdentityResult",
    "compute_identity", "load_arcface", "LPIPSResult", "build_lpips", "compute_lpips", "MissingWeightsError",
    "Distance", "feature_distance", "lpips_distance", "lpips_embedding", "pixel_l2", "DiversityResult",
    "intra_cluster_distance", "MemorisationReport", "NearestTraining", "memorisation_report",
]
