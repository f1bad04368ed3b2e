"""The Fréchet distance between two Gaussians, the one definition behind FID and the SynthFaces realism score.

    d² = ‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½)                        (Dowson & Landau 1982; Heusel et al. 2017)

Tr((Σ_a Σ_b)^½) is computed as Σ_i √λ_i, λ_i the eigenvalues of the symmetric matrix Σ_a^½ Σ_b Σ_a^½ (which has
the same spectrum as Σ_a Σ_b), so only symmetric eigendecompositions are needed: no complex round-off to discard,
unlike SciPy's ``sqrtm`` of the non-symmetric product that clean-fid uses. The two agree to 1e-6 relative
(``tests/test_metrics_fid.py``).
"""
from __future__ import annotations

import numpy as np


def gaussian_fit(features) -> tuple[np.ndarray, np.ndarray]:
    """(μ, Σ) in float64 with the unbiased covariance. features: [N, D] (N ≥ 2)."""
    array = np.asarray(features, dtype=np.float64)
    return array.mean(axis=0), np.cov(array, rowvar=False)


def frechet_distance(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray) -> float:
    """d² between N(μ_a, Σ_a) and N(μ_b, Σ_b). μ: [D]; Σ: [D, D] symmetric positive semi-definite."""
    eigenvalues, eigenvectors = np.linalg.eigh(sigma_a)
    sqrt_a = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T
    cross = np.linalg.eigvalsh(sqrt_a @ sigma_b @ sqrt_a)           # the spectrum of Σ_a Σ_b, all ≥ 0
    trace_sqrt = np.sqrt(np.clip(cross, 0.0, None)).sum()
    diff = np.asarray(mu_a) - np.asarray(mu_b)
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt)


def frechet_distance_of_features(features_a, features_b) -> float:
    """d² between the Gaussian fits of two feature sets. features: [N, D] and [M, D]."""
    return frechet_distance(*gaussian_fit(features_a), *gaussian_fit(features_b))
