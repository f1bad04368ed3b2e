"""ArcFace IR-SE50: the published key layout, strict loading of a file the test saves, and ID(x, x) = 1."""
import pytest
import torch

from sdft_lite.metrics.identity import (IRSE50, compute_identity, face_crop, identity_similarities,
                                        load_arcface)


@pytest.fixture(scope="module")
def arcface_file(tmp_path_factory):
    """A randomly initialised IR-SE50 with non-trivial BatchNorm statistics, saved as a bare state dict."""
    torch.manual_seed(0)
    model = IRSE50()
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("arcface") / "model_ir_se50.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_state_dict_layout_matches_the_published_names():
    """Names and shapes as in TreB1eN's Backbone(50, 0.6, 'ir_se'): 24 units, SE reduction 16, 512·7·7 head."""
    state = IRSE50().state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["input_layer.0.weight"] == (64, 3, 3, 3)
    assert shapes["input_layer.2.weight"] == (64,)  # PReLU
    assert not any(k.startswith("body.0.shortcut_layer") for k in shapes)  # 64 -> 64: MaxPool(1, 2), no params
    assert shapes["body.3.shortcut_layer.0.weight"] == (128, 64, 1, 1)  # first unit of stage 2
    assert shapes["body.7.shortcut_layer.0.weight"] == (256, 128, 1, 1)  # first unit of stage 3
    assert shapes["body.21.shortcut_layer.0.weight"] == (512, 256, 1, 1)  # first unit of stage 4
    assert shapes["body.23.res_layer.5.fc1.weight"] == (32, 512, 1, 1)
    assert shapes["body.23.res_layer.5.fc2.weight"] == (512, 32, 1, 1)
    assert shapes["output_layer.3.weight"] == (512, 512 * 7 * 7)
    assert shapes["output_layer.4.running_var"] == (512,)
    assert max(int(k.split(".")[1]) for k in shapes if k.startswith("body.")) == 23
    assert {k.split(".")[0] for k in shapes} == {"input_layer", "body", "output_layer"}


def test_face_crop_shapes():
    assert face_crop(torch.zeros(2, 3, 256, 256)).shape == (2, 3, 112, 112)
    assert face_crop(torch.zeros(1, 3, 128, 128)).shape == (1, 3, 112, 112)


def test_saved_file_loads_strict_and_self_similarity_is_one(arcface_file):
    path, saved = arcface_file
    model = load_arcface(path, device="cpu")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    g = torch.Generator().manual_seed(1)
    a, b = (torch.rand(2, 3, 256, 256, generator=g) * 2 - 1).unbind(0)
    scores = identity_similarities(model, torch.stack([a, a]), torch.stack([a, b]))
    assert scores[0].item() == pytest.approx(1.0, abs=1e-6)
    assert scores[1].item() < 1 - 1e-4
    result = compute_identity(b[None], b[None], model=model)
    assert result.identity == pytest.approx(1.0, abs=1e-6)
    assert result.model == "arcface-ir-se50 (model_ir_se50.pth)" and result.n == 1


def test_file_without_num_batches_tracked_loads_strict(arcface_file, tmp_path):
    """Files saved by PyTorch < 0.4.1 have no num_batches_tracked entries (and no version metadata)."""
    _, saved = arcface_file
    old_style = {k: v for k, v in saved.items() if not k.endswith("num_batches_tracked")}
    torch.save(old_style, tmp_path / "model_ir_se50.pth")
    load_arcface(tmp_path / "model_ir_se50.pth", device="cpu")  # strict=True inside
