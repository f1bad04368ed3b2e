"""PSNR and SSIM on luma (as the authors' evaluation notebooks compute them) against scikit-image and SciPy, computed independently in NumPy."""
import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sdft_lite.metrics.fidelity import compute_fidelity, luma, psnr, ssim, ssim_map

TOL = 1e-4  # agreement with the independent references (observed ~1e-12: same float64 arithmetic)
PAD = 5  # skimage crops (win_size - 1) // 2 = 5 border pixels before averaging the SSIM map


def _image_pairs(seed: int = 0, n: int = 3, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [n, H, W, 3] pairs: smooth random images and noisy copies (a PSNR in the 20-30 dB range)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(n, size // 8, size // 8, 3))
    clean = ndimage.zoom(coarse, (1, 8, 8, 1), order=1)
    noisy = clean + rng.normal(0, 12, size=clean.shape)
    return np.clip(clean, 0, 255).round().astype(np.uint8), np.clip(noisy, 0, 255).round().astype(np.uint8)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [n, H, W, 3] -> [n, 3, H, W] float32 in [-1, 1], as images.load_image does."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def _numpy_luma(images: np.ndarray, authors_scaling: bool) -> np.ndarray:
    """The paper's luma written directly: R = round(255 x), Y = round(.257R + .504G + .098B + 16) / 255."""
    k = images.astype(np.float64)
    x = (k / 127.5 - 1) if authors_scaling else k / 255  # what the formula receives
    r, g, b = np.round(255 * x[..., 0]), np.round(255 * x[..., 1]), np.round(255 * x[..., 2])
    return np.round(0.257 * r + 0.504 * g + 0.098 * b + 16) / 255


@pytest.mark.parametrize("authors_scaling", [False, True])
def test_luma_matches_numpy(authors_scaling):
    a, _ = _image_pairs()
    ours = luma(_to_tensor(a), authors_scaling)[:, 0].numpy()
    np.testing.assert_array_equal(ours, _numpy_luma(a, authors_scaling))


@pytest.mark.parametrize("authors_scaling", [False, True])
def test_psnr_matches_skimage(authors_scaling):
    a, b = _image_pairs()
    ours = psnr(_to_tensor(a), _to_tensor(b), authors_scaling).numpy()
    ya, yb = _numpy_luma(a, authors_scaling), _numpy_luma(b, authors_scaling)
    reference = [peak_signal_noise_ratio(ya[i], yb[i], data_range=1.0) for i in range(len(a))]
    np.testing.assert_allclose(ours, reference, rtol=0, atol=TOL)


def test_ssim_interior_matches_skimage():
    """Away from the border our map equals skimage's Gaussian SSIM (σ 1.5, 11 taps, population covariance)."""
    a, b = _image_pairs()
    ya, yb = _numpy_luma(a, False), _numpy_luma(b, False)
    ours_map = ssim_map(luma(_to_tensor(a)), luma(_to_tensor(b)))[:, 0].numpy()
    for i in range(len(a)):
        reference = structural_similarity(ya[i], yb[i], gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=1.0)
        assert abs(ours_map[i, PAD:-PAD, PAD:-PAD].mean() - reference) < TOL


def test_ssim_full_map_matches_zero_padded_scipy():
    """The paper's SSIM averages the whole map with zero padding (conv2d padding=5): rebuild it with SciPy."""
    a, b = _image_pairs(seed=1)
    ya, yb = _numpy_luma(a, False), _numpy_luma(b, False)

    def local_mean(z):
        return ndimage.gaussian_filter(z, sigma=1.5, mode="constant", cval=0.0, truncate=3.5)  # radius 5

    c1, c2 = 0.01**2, 0.03**2
    for i in range(len(a)):
        mu1, mu2 = local_mean(ya[i]), local_mean(yb[i])
        var1 = local_mean(ya[i] ** 2) - mu1**2
        var2 = local_mean(yb[i] ** 2) - mu2**2
        cov = local_mean(ya[i] * yb[i]) - mu1 * mu2
        smap = ((2 * mu1 * mu2 + c1) * (2 * cov + c2)) / ((mu1**2 + mu2**2 + c1) * (var1 + var2 + c2))
        ours = ssim(_to_tensor(a[i:i + 1]), _to_tensor(b[i:i + 1])).item()
        assert abs(ours - smap.mean()) < TOL


def test_authors_scaling_lowers_psnr_by_about_6db():
    """Feeding [-1,1] into the [0,1] formula doubles luma differences: MSE ×4, PSNR − 10·log10(4) = −6.02 dB.
    Luma is re-rounded to 8 bits after the doubling, so the shift is 6.02 dB only up to quantisation: ±0.4 dB."""
    a, b = _image_pairs(seed=2, n=4)
    x, y = _to_tensor(a), _to_tensor(b)
    shift = (psnr(x, y) - psnr(x, y, authors_scaling=True)).numpy()
    assert np.all((shift > 5.6) & (shift < 6.4)), shift


def test_identical_images_and_summary():
    a, b = _image_pairs(n=2)
    x, y = _to_tensor(a), _to_tensor(b)
    assert torch.isinf(psnr(x, x)).all()
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    result = compute_fidelity(x, y, batch_size=1)  # batching must not change the per-image mean
    assert result.n == 2
    assert result.psnr_db == pytest.approx(psnr(x, y).mean().item(), abs=1e-12)
    assert result.ssim == pytest.approx(ssim(x, y).mean().item(), abs=1e-12)
    authors = compute_fidelity(x, y, authors_scaling=True)
    assert not result.comparable_with(authors) and result.comparable_with(compute_fidelity(y, x))
