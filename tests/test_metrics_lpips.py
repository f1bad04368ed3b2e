"""LPIPS through the lpips package, on a seeded random VGG trunk built offline (``pnet_rand=True``).

These check the plumbing and the metric's structure (zero on identical images, symmetry), not the calibrated
values, which need torchvision's ImageNet trunk (see test_metrics_weights.py for its offline loading)."""
import pytest
import torch

from sdft_lite.metrics.perceptual import build_lpips, compute_lpips, lpips_distances


@pytest.fixture(scope="module")
def random_vgg():
    return build_lpips("vgg", backbone="random", device="cpu")


def _images(seed, n=3, size=32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_identical_images_score_zero(random_vgg):
    x = _images(0)
    assert torch.equal(lpips_distances(random_vgg, x, x), torch.zeros(3))


def test_symmetric_and_positive(random_vgg):
    x, y = _images(1), _images(2)
    d_xy, d_yx = lpips_distances(random_vgg, x, y), lpips_distances(random_vgg, y, x)
    torch.testing.assert_close(d_xy, d_yx, rtol=1e-5, atol=1e-7)
    assert (d_xy > 0).all()


def test_batching_does_not_change_values(random_vgg):
    x, y = _images(3, n=4, size=16), _images(4, n=4, size=16)
    torch.testing.assert_close(lpips_distances(random_vgg, x, y, batch_size=2),
                               lpips_distances(random_vgg, x, y, batch_size=4), rtol=1e-5, atol=1e-6)


def test_random_trunk_is_named_in_every_result(random_vgg):
    result = compute_lpips(_images(5), _images(6), model=random_vgg)
    assert not result.calibrated
    assert "RANDOM TRUNK" in result.model_name
    assert result.n == 3 and result.lpips > 0


def test_random_trunk_is_seeded():
    a, b = build_lpips("alex", backbone="random", seed=0), build_lpips("alex", backbone="random", seed=0)
    assert all(torch.equal(p, q) for p, q in zip(a.net.parameters(), b.net.parameters()))


def test_rejects_unknown_net_and_backbone():
    with pytest.raises(ValueError, match="net"):
        build_lpips("squeeze-typo")
    with pytest.raises(ValueError, match="backbone"):
        build_lpips("vgg", backbone="pretrained")
