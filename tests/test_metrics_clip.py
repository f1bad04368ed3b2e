"""S_dir = cos(ΔI, ΔT) (the directional loss of StyleGAN-NADA, Gal et al. 2022) on a small deterministic encoder pair, recomputed in NumPy, and
OpenAI-format CLIP loading from a tiny checkpoint file the test writes itself."""
import numpy as np
import pytest
import torch

from sdft_lite.metrics.clip_direction import (IMAGENET_TEMPLATES, ClipEncoders, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
                                              compute_sdir, directional_similarity, text_direction)

DIM = 5


class ToyEncoders:
    """Deterministic encoders into R^5: images by mean colour and contrast, text by letter counts."""

    name = "toy"

    def __init__(self):
        rng = np.random.default_rng(0)
        self.image_map = torch.from_numpy(rng.normal(size=(5, DIM)))
        self.text_map = torch.from_numpy(rng.normal(size=(26, DIM)))

    def encode_image(self, x):
        stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3)).mean(1, keepdim=True), torch.ones(len(x), 1)], 1)
        return stats.double()[:, :5] @ self.image_map + 0.1

    def encode_text(self, texts):
        counts = torch.tensor([[t.count(chr(97 + i)) for i in range(26)] for t in texts], dtype=torch.float64)
        return counts @ self.text_map


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _numpy_sdir(enc, x_src, x_edit, source, target):
    """The formula written out with NumPy, one template and one image at a time."""
    diffs = []
    for template in IMAGENET_TEMPLATES:
        e_src = enc.encode_text([template.format(source)]).numpy()[0]
        e_trg = enc.encode_text([template.format(target)]).numpy()[0]
        diffs.append(_unit(e_trg) - _unit(e_src))
    delta_t = _unit(np.mean(diffs, axis=0))
    scores = []
    for i in range(len(x_src)):
        e_src = enc.encode_image(x_src[i:i + 1]).numpy()[0]
        e_edit = enc.encode_image(x_edit[i:i + 1]).numpy()[0]
        delta_i = _unit(_unit(e_edit) - _unit(e_src))
        scores.append(float(delta_i @ delta_t))
    return np.array(scores)


def _images(seed, n=4, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_templates_are_the_79_imagenet_prompts():
    assert len(IMAGENET_TEMPLATES) == 79 and len(set(IMAGENET_TEMPLATES)) == 79
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    assert "a photo of many {}." not in IMAGENET_TEMPLATES  # the one CLIP template the editing papers drop
    assert IMAGENET_TEMPLATES[0] == "a bad photo of a {}." and IMAGENET_TEMPLATES[-1] == "a tattoo of the {}."


def test_sdir_matches_numpy_formula():
    enc = ToyEncoders()
    x_src, x_edit = _images(0), _images(1)
    ours = directional_similarity(enc, x_src, x_edit, "face", "smiling face", batch_size=3)
    np.testing.assert_allclose(ours.numpy(), _numpy_sdir(enc, x_src, x_edit, "face", "smiling face"),
                               rtol=0, atol=1e-12)


def test_sdir_sign_flips_with_reversed_edit_or_text():
    enc = ToyEncoders()
    x_src, x_edit = _images(2), _images(3)
    forward = directional_similarity(enc, x_src, x_edit, "face", "angry face")
    assert torch.allclose(directional_similarity(enc, x_edit, x_src, "face", "angry face"), -forward)
    assert torch.allclose(directional_similarity(enc, x_src, x_edit, "angry face", "face"), -forward)
    assert (forward.abs() <= 1 + 1e-12).all()


def test_sdir_is_one_for_an_edit_along_the_text_direction():
    """An image encoder that maps the edit exactly onto ΔT gives S_dir = 1."""
    enc = ToyEncoders()
    delta_t = text_direction(enc.encode_text, "face", "old face")

    # source u with u·ΔT < 0; edit = u reflected across ΔT's hyperplane: still unit, and edit − u = −2(u·ΔT)ΔT.
    u = torch.nn.functional.normalize(torch.ones(DIM, dtype=torch.float64) - 3 * delta_t, dim=0)
    reflected = u - 2 * (u @ delta_t) * delta_t

    class AlongText(ToyEncoders):
        def encode_image(self, x):  # images with positive mean are "edited"
            return torch.where((x.mean(dim=(1, 2, 3)) > 0)[:, None], reflected, u)

    x_src, x_edit = -torch.ones(2, 3, 8, 8), torch.ones(2, 3, 8, 8)
    result = compute_sdir(x_src, x_edit, "face", "old face", encoders=AlongText())
    assert result.s_dir == pytest.approx(1.0, abs=1e-12)
    assert (result.encoder, result.n) == ("toy", 2)


# ---------------------------------------------------------------------------------------------------------------
# OpenAI-format CLIP file, loaded by open_clip offline


def write_tiny_clip(folder):
    """A 1-layer CLIP (32-px images, OpenAI key layout) saved as a state dict, like OpenAI's checkpoint files."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    model = CLIP(embed_dim=32, quick_gelu=True,
                 vision_cfg=CLIPVisionCfg(layers=1, width=64, patch_size=16, image_size=32, head_width=64),
                 text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=1))
    path = folder / "ViT-B-32.pt"
    torch.save(model.state_dict(), path)
    return path, model


@pytest.fixture(scope="module")
def tiny_clip_file(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


def test_openai_checkpoint_loads_and_encodes(tiny_clip_file):
    import open_clip

    path, reference = tiny_clip_file
    enc = ClipEncoders.from_file("ViT-B/32", path=path, device="cpu")
    assert enc.resolution == 32 and enc.name == "openai-clip-ViT-B/32"
    open_clip.model.convert_weights_to_lp(reference.eval(), dtype=torch.float16)  # as OpenAI loading does
    reference = reference.float()
    x = _images(4, n=2, size=32)
    with torch.no_grad():
        expected_image = reference.encode_image(enc.preprocess(x))
        expected_text = reference.encode_text(open_clip.tokenize(["a photo of a face."]))
    torch.testing.assert_close(enc.encode_image(x), expected_image, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(enc.encode_text(["a photo of a face."]), expected_text, rtol=1e-5, atol=1e-6)
    result = compute_sdir(x, _images(5, n=2, size=32), "face", "smiling face", encoders=enc)
    assert -1 <= result.s_dir <= 1


def test_preprocess_maps_range_and_size(tiny_clip_file):
    path, _ = tiny_clip_file
    enc = ClipEncoders.from_file(path=path, device="cpu")
    x = _images(6, n=1, size=32)
    mean, std = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(enc.preprocess(x), ((x + 1) / 2 - mean) / std, rtol=1e-5, atol=1e-5)
    wide = _images(7, n=2, size=64)[..., :48]  # 64 x 48 -> shorter side 32, centre crop 32 x 32
    assert enc.preprocess(wide).shape == (2, 3, 32, 32)
