"""FID and KID: the Fréchet distance against its closed form, KID against a direct NumPy MMD², and the folder
pipeline against clean-fid's own ``compute_fid(..., custom_feat_extractor=...)``."""
import numpy as np
import pytest
import torch

from sdft_lite.metrics import fid, frechet
from sdft_lite.sample import save_images


# ---------------------------------------------------------------------------------------------------------------
# Fréchet distance


def _closed_form_fid(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr (Σ1 Σ2)^½, with Tr (Σ1Σ2)^½ = Σ √eig(Σ1^½ Σ2 Σ1^½) (symmetric eigh)."""
    w, v = np.linalg.eigh(sigma1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    eig = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sum(np.sqrt(eig)))


def _random_gaussian(rng, dim):
    a = rng.normal(size=(dim, dim))
    return rng.normal(size=dim), a @ a.T / dim + 0.5 * np.eye(dim)


def _features_with_exact_moments(rng, mu, sigma, n):
    """n samples whose sample mean is exactly μ and whose unbiased sample covariance is exactly Σ."""
    z = rng.normal(size=(n, len(mu)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # whitened: cov(z) = I
    return mu + z @ np.linalg.cholesky(sigma).T


def test_fid_equals_closed_form_on_exact_moments():
    rng = np.random.default_rng(0)
    (mu1, s1), (mu2, s2) = _random_gaussian(rng, 6), _random_gaussian(rng, 6)
    f1 = _features_with_exact_moments(rng, mu1, s1, 50)
    f2 = _features_with_exact_moments(rng, mu2, s2, 70)
    assert fid.fid_from_features(f1, f2) == pytest.approx(_closed_form_fid(mu1, s1, mu2, s2), rel=1e-8)


def test_fid_of_sampled_gaussians_near_closed_form():
    """n = 20,000 draws in 4-d: the estimator's standard error here is ≈ 0.05, its bias O(d/n) ≈ 1e-3;
    tolerance 0.25 (≈ 5 standard errors)."""
    rng = np.random.default_rng(1)
    (mu1, s1), (mu2, s2) = _random_gaussian(rng, 4), _random_gaussian(rng, 4)
    f1 = rng.multivariate_normal(mu1, s1, size=20_000)
    f2 = rng.multivariate_normal(mu2, s2, size=20_000)
    expected = _closed_form_fid(mu1, s1, mu2, s2)
    assert expected > 1.0  # a non-trivial distance
    assert abs(fid.fid_from_features(f1, f2) - expected) < 0.25


def test_fid_of_a_set_with_itself_is_zero():
    f = np.random.default_rng(2).normal(size=(200, 8))
    assert abs(fid.fid_from_features(f, f)) < 1e-8


def test_fid_failure_explains_rank_deficiency():
    """When the eigendecomposition fails (here: a NaN feature among fewer images than dimensions), the error
    says why."""
    f, g = np.random.default_rng(3).normal(size=(2, 5, 64))
    f[0, 0] = np.nan
    with pytest.raises(ValueError, match="5 and 5 images of 64-d features the covariances are rank-deficient"):
        fid.fid_from_features(f, g)


def test_frechet_distance_matches_scipy_sqrtm():
    """The symmetric-eigh form equals the textbook formula with SciPy's sqrtm of Σ1Σ2 (what clean-fid computes)
    to 1e-6 relative; a set with itself is 0; a pure shift gives ‖Δμ‖²."""
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 8)) @ rng.standard_normal((8, 8))
    b = rng.standard_normal((400, 8)) * 1.5 + 0.3
    (mu_a, cov_a), (mu_b, cov_b) = frechet.gaussian_fit(a), frechet.gaussian_fit(b)
    textbook = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * scipy_linalg.sqrtm(cov_a @ cov_b).real))
    assert frechet.frechet_distance_of_features(a, b) == pytest.approx(textbook, rel=1e-6)
    assert abs(frechet.frechet_distance_of_features(a, a)) < 1e-8
    assert frechet.frechet_distance_of_features(a, a + 2.0) == pytest.approx(8 * 4.0, rel=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# KID


def _numpy_kid(feats1, feats2, num_subsets, max_subset_size, seed) -> float:
    """Unbiased MMD² with k(x, y) = (xᵀy/d + 1)³ averaged over subsets, drawn as clean-fid draws them:
    per subset, m rows of feats2 then m rows of feats1, from NumPy's global RNG seeded once."""
    d = feats1.shape[1]
    m = min(len(feats1), len(feats2), max_subset_size)
    np.random.seed(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = feats2[np.random.choice(len(feats2), m, replace=False)]
        y = feats1[np.random.choice(len(feats1), m, replace=False)]
        kxx, kyy, kxy = [(a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y))]
        off_diagonal = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        total += off_diagonal - 2 * kxy.sum() / m**2
    return total / num_subsets


def test_kid_matches_direct_numpy_mmd():
    rng = np.random.default_rng(5)
    f1 = rng.normal(size=(80, 16))
    f2 = rng.normal(loc=0.3, size=(60, 16))
    ours = fid.kid_from_features(f1, f2, num_subsets=10, max_subset_size=50, seed=3)
    reference = _numpy_kid(f1, f2, 10, 50, 3)
    assert reference > 0
    assert ours == pytest.approx(reference, rel=1e-10)


def test_kid_restores_numpy_global_rng():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    fid.kid_from_features(np.ones((4, 2)), np.zeros((4, 2)), num_subsets=2)
    assert np.random.rand() == expected


def test_kid_result_is_scaled_by_1e3():
    rng = np.random.default_rng(6)
    f1, f2 = rng.normal(size=(30, 4)), rng.normal(loc=1.0, size=(40, 4))
    result = fid.kid_result(f1, f2, "x", num_subsets=5, seed=1)
    assert result.kid_x1e3 == pytest.approx(1e3 * fid.kid_from_features(f1, f2, 5, seed=1), rel=1e-12)
    assert (result.n1, result.n2, result.subset_size) == (30, 40, 30)


# ---------------------------------------------------------------------------------------------------------------
# The folder pipeline, with a small deterministic extractor


def _tiny_extractor_factory(device):
    """[B, 3, 299, 299] in [0, 255] -> [B, 6]: 4x4 average colours through a fixed random projection."""
    projection = torch.from_numpy(np.random.default_rng(7).normal(size=(48, 6))).float().to(device)

    def features(x):
        pooled = torch.nn.functional.adaptive_avg_pool2d(x / 255, 4).flatten(1)
        return torch.tanh(pooled @ projection)

    return features


@pytest.fixture
def tiny_extractor(monkeypatch):
    monkeypatch.setitem(fid._EXTRACTORS, "test-tiny", _tiny_extractor_factory)
    return "test-tiny"


def _image_sets(seed=0, n1=24, n2=20, size=32):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n1, 3, size, size, generator=g) * 2 - 1
    b = (torch.rand(n2, 3, size, size, generator=g) * 1.6 - 0.6)  # a shifted colour distribution
    return a, b


@pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")  # inside the clean-fid oracle
def test_pipeline_matches_cleanfid_compute_fid(tiny_extractor, tmp_path):
    from cleanfid import fid as cleanfid

    a, b = _image_sets()
    save_images(a, tmp_path / "a")
    save_images(b, tmp_path / "b")
    ours = fid.compute_fid(tmp_path / "a", tmp_path / "b", tiny_extractor, device="cpu", batch_size=8)
    reference = cleanfid.compute_fid(str(tmp_path / "a"), str(tmp_path / "b"), mode="clean", num_workers=0,
                                     batch_size=8, device=torch.device("cpu"), verbose=False,
                                     custom_feat_extractor=_tiny_extractor_factory(torch.device("cpu")),
                                     use_dataparallel=False)
    assert ours.fid > 0.01
    assert ours.fid == pytest.approx(reference, rel=1e-4)  # float32 vs float64 statistics
    assert (ours.extractor, ours.n1, ours.n2) == ("test-tiny", 24, 20)


def test_tensors_and_folders_give_the_same_numbers(tiny_extractor, tmp_path):
    a, b = _image_sets(seed=1)
    from_tensors = fid.compute_fid_kid(a, b, tiny_extractor, device="cpu")
    save_images(a, tmp_path / "a")
    save_images(b, tmp_path / "b")
    from_folders = fid.compute_fid_kid(tmp_path / "a", tmp_path / "b", tiny_extractor, device="cpu")
    assert from_tensors == from_folders
    same = fid.compute_fid(a, a, tiny_extractor, device="cpu")
    assert abs(same.fid) < 1e-6


def test_results_compare_only_within_one_extractor():
    a = fid.FIDResult(10.0, "inception", 100, 100)
    b = fid.FIDResult(12.0, "inception", 50, 80)
    c = fid.FIDResult(10.0, "random-inception-smoke", 100, 100)
    assert a.comparable_with(b) and not a.comparable_with(c)
    assert a.paper_comparable and not c.paper_comparable
    k = fid.KIDResult(1.0, "inception", 100, 100, 100, 100, 0)
    assert not a.comparable_with(k) and not k.comparable_with(a)


def test_unknown_extractor_lists_registered():
    with pytest.raises(KeyError, match="random-inception-smoke"):
        fid.build_extractor("no-such-net", torch.device("cpu"))


def test_extractor_from_module_path(monkeypatch):
    """'module:factory' imports and registers a user's extractor (the command-line plug-in route)."""
    monkeypatch.setattr(fid, "_EXTRACTORS", dict(fid._EXTRACTORS))
    name = f"{__name__}:_tiny_extractor_factory"
    features = fid.build_extractor(name, torch.device("cpu"))
    assert features(torch.full((2, 3, 299, 299), 128.0)).shape == (2, 6)
    assert name in fid.available_extractors()


def test_random_inception_smoke_is_seeded_and_bounded():
    """The named smoke extractor: Inception-v3 shapes, seeded random weights, unit-norm 2048-d features."""
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(8)) * 255
    features = fid.build_extractor("random-inception-smoke", torch.device("cpu"))
    with torch.no_grad():
        f = features(x)
    assert f.shape == (2, 2048)
    torch.testing.assert_close(f.norm(dim=1), torch.ones(2))
    with torch.no_grad():
        again = fid.build_extractor("random-inception-smoke", torch.device("cpu"))(x)
    torch.testing.assert_close(f, again)
