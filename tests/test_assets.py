"""The shipped assets exist, match their sha256 and load."""
import pytest

from sdft_lite.assets import REGISTRY, AssetError, asset_path


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_asset_is_present_and_intact(name):
    assert asset_path(name).stat().st_size < 16 * 2**20


def test_a_corrupt_asset_is_a_clear_error(tmp_path, monkeypatch):
    import sdft_lite.assets as assets
    (tmp_path / "synthfaces").mkdir()
    (tmp_path / "synthfaces" / "classifier.pt").write_bytes(b"garbage")
    monkeypatch.setattr(assets, "ASSET_DIR", tmp_path)
    asset_path.cache_clear()
    with pytest.raises(AssetError, match="corrupt"):
        asset_path("synthfaces/classifier.pt")
    with pytest.raises(AssetError, match="missing"):
        asset_path("synthfaces/realism.pt")
    asset_path.cache_clear()


def test_the_source_model_loads_and_samples():
    import torch

    from sdft_lite.checkpoint import load_unet
    from sdft_lite.sample import generate
    model = load_unet(asset_path("synthfaces/source_demo32.pt"))
    x = generate(model, 2, 32, "ddim5", seed=0, batch_size=2)
    assert x.shape == (2, 3, 32, 32) and torch.isfinite(x).all()
