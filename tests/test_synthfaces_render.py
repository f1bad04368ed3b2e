"""SynthFaces renderer: deterministic by (seed, stream, index), labels that show in the pixels, analytic at any size.

Label checks compare the *same* faces (same pose, background, noise) with one attribute changed, measured in
regions given in each face's own coordinates. Tolerances are in [0, 1] luminance units.
"""
import numpy as np
import pytest
import torch

from sdft_lite.synthfaces import renderer as R
from sdft_lite.synthfaces.attributes import ATTRIBUTES, NUM_LEVELS
from sdft_lite.synthfaces.renderer import draw_faces, local_coordinates, render, render_floats, sample_faces
from sdft_lite.synthfaces.styles import apply_style

SIZE, N, SEED, STREAM = 48, 24, 3, "test/render"


def luminance(images: np.ndarray) -> np.ndarray:
    """images: [N, 3, H, W] in [0, 1] → [N, H, W]."""
    return 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]


def flat_faces(fixed: dict, size: int = SIZE) -> np.ndarray:
    """Faces 0…N−1 of the test stream before any style, with some attributes fixed. [N, 3, H, W]."""
    return draw_faces(sample_faces(np.arange(N), SEED, STREAM, size, fixed=fixed), size)


def region(mask_fn, size: int = SIZE) -> np.ndarray:
    """A boolean mask [N, H, W] from a predicate on each face's local coordinates (x right, y down)."""
    x, y, _ = local_coordinates(sample_faces(np.arange(N), SEED, STREAM, size), size)
    return mask_fn(x, y)


def region_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-image mean of values [N, H, W] over mask [N, H, W] → [N]."""
    return (values * mask).sum(axis=(1, 2)) / mask.sum(axis=(1, 2))


def test_same_seed_same_images_other_seed_other_images():
    a, labels_a = render(16, "portrait", 32, seed=5)
    b, labels_b = render(16, "portrait", 32, seed=5)
    c, _ = render(16, "portrait", 32, seed=6)
    assert np.array_equal(a, b) and np.array_equal(labels_a.stack(), labels_b.stack())
    assert all(not np.array_equal(a[i], c[i]) for i in range(16))


def test_a_face_is_the_same_alone_or_in_a_batch():
    batch, labels = render_floats(np.arange(300), "photo", 32, SEED, STREAM)   # crosses the 256-image chunk
    for index in (0, 17, 280):
        alone, alone_labels = render_floats([index], "photo", 32, SEED, STREAM)
        assert np.array_equal(alone[0], batch[index])
        assert np.array_equal(alone_labels.stack()[0], labels.stack()[index])


def test_fixing_an_attribute_changes_nothing_else():
    plain = sample_faces(np.arange(N), SEED, STREAM, SIZE)
    with_sunglasses = sample_faces(np.arange(N), SEED, STREAM, SIZE, fixed={"eyewear": 2})
    assert np.all(with_sunglasses.levels["eyewear"] == 2)
    for name in ("skin", "expression", "hair"):
        assert np.array_equal(plain.levels[name], with_sunglasses.levels[name])
    assert np.array_equal(plain.center, with_sunglasses.center)
    assert np.array_equal(plain.background, with_sunglasses.background)
    assert np.array_equal(plain.noise, with_sunglasses.noise)


def test_sunglasses_darken_the_eyes_and_glasses_ring_them():
    eyes = region(lambda x, y: (np.abs(np.abs(x) - 0.17) < 0.08) & (np.abs(y + 0.04) < 0.05))
    rims = region(lambda x, y: np.abs(np.hypot(np.abs(x) - 0.17, y + 0.04) - 0.12) < 0.015)
    none, glasses, sunglasses = (luminance(flat_faces({"eyewear": level, "skin": 1})) for level in (0, 1, 2))
    assert np.all(region_mean(sunglasses, eyes) < region_mean(none, eyes) - 0.35)
    assert np.all(region_mean(glasses, rims) < region_mean(none, rims) - 0.3)
    assert np.allclose(region_mean(glasses, eyes), region_mean(none, eyes), atol=0.1)   # the eyes show through


def test_darker_skin_levels_darken_the_face():
    cheeks = region(lambda x, y: (np.abs(np.abs(x) - 0.22) < 0.06) & (np.abs(y - 0.12) < 0.05))
    means = np.stack([region_mean(luminance(flat_faces({"skin": level, "expression": 0, "eyewear": 0})), cheeks)
                      for level in range(NUM_LEVELS["skin"])])                  # [levels, N]
    assert np.all(np.diff(means, axis=0) < -0.05)                              # each level darker than the last
    assert np.all(means[0] - means[-1] > 0.5)


def test_open_smile_shows_teeth_and_smile_shows_a_red_arc():
    teeth = region(lambda x, y: (np.abs(x) < 0.1) & (y > 0.2) & (y < 0.25))
    corners = region(lambda x, y: (np.abs(np.abs(x) - 0.17) < 0.03) & (np.abs(y - 0.2) < 0.03))
    dark_skin = {"skin": 4}   # so that bright pixels can only be teeth
    neutral, smile, open_smile = (flat_faces({**dark_skin, "expression": level}) for level in range(3))
    bright_teeth = (luminance(open_smile) > 0.85) & teeth
    assert np.all(bright_teeth.sum(axis=(1, 2)) >= 3)
    assert not np.any((luminance(neutral) > 0.85) & teeth)
    redness = lambda images: region_mean(images[:, 0] - images[:, 1], corners)   # noqa: E731
    assert np.all(redness(smile) > redness(neutral) + 0.25)


def test_hair_colours_differ_where_the_hair_is():
    crown = region(lambda x, y: (np.abs(x) < 0.15) & (y > -0.6) & (y < -0.45))
    colours = np.stack([np.stack([region_mean(c, crown) for c in flat_faces({"hair": level}).transpose(1, 0, 2, 3)])
                        for level in range(NUM_LEVELS["hair"])])                 # [levels, 3, N]
    for a in range(NUM_LEVELS["hair"]):
        for b in range(a + 1, NUM_LEVELS["hair"]):
            assert np.all(np.abs(colours[a] - colours[b]).max(axis=0) > 0.2)


def test_drawing_in_feature_windows_equals_drawing_everywhere(monkeypatch):
    params = sample_faces(np.arange(N), SEED, STREAM, SIZE)
    windowed = draw_faces(params, SIZE)
    monkeypatch.setattr(R, "feature_window", lambda size, *box: (slice(None), slice(None)))
    assert np.allclose(draw_faces(params, SIZE), windowed, atol=1e-6)


def test_rendering_is_analytic_not_upscaled():
    """A 64-px face, area-averaged down to 32 px, matches the 32-px render of the same face (to 0.03 mean)."""
    fine = flat_faces({}, size=64)
    coarse = flat_faces({}, size=32)
    pooled = fine.reshape(N, 3, 32, 2, 32, 2).mean(axis=(3, 5))
    assert np.abs(pooled - coarse).mean() < 0.03
    nearest = coarse.repeat(2, axis=2).repeat(2, axis=3)
    assert np.abs(fine - nearest).mean() > 0.01   # and it holds detail a 32-px upscale lacks


def chromaticity_spread(images: np.ndarray) -> float:
    """How varied the hues of a batch are: std over all pixels of (r, g) / (r + g + b)."""
    rg = images[:, :2] / (images.sum(axis=1, keepdims=True) + 1e-3)
    return float(rg.transpose(1, 0, 2, 3).reshape(2, -1).std(axis=1).mean())


def test_portrait_style_is_softer_muted_and_lower_contrast():
    params = sample_faces(np.arange(N), SEED, STREAM, SIZE)
    base = draw_faces(params, SIZE)
    photo, portrait = apply_style(base, "photo", params.noise), apply_style(base, "portrait", params.noise)
    sharpness = lambda im: np.abs(np.diff(luminance(im), axis=2)).mean(axis=(1, 2))  # noqa: E731
    contrast = lambda im: luminance(im).std(axis=(1, 2))                          # noqa: E731
    assert chromaticity_spread(portrait) < 0.6 * chromaticity_spread(photo)
    assert contrast(portrait).mean() < 0.85 * contrast(photo).mean()   # per image the vignette can add some
    assert np.all(sharpness(portrait) < 0.8 * sharpness(photo))


def test_output_formats_and_labels():
    images, labels = render(6, "photo", 40, seed=1)
    assert images.shape == (6, 40, 40, 3) and images.dtype == np.uint8
    tensor, _ = render(6, "photo", 40, seed=1, output="tensor")
    assert tensor.shape == (6, 3, 40, 40) and tensor.dtype == torch.float32
    assert tensor.min() >= -1 and tensor.max() <= 1
    assert torch.allclose((tensor.permute(0, 2, 3, 1) + 1) * 127.5, torch.from_numpy(images).float(), atol=0.51)
    assert labels.stack().shape == (6, len(ATTRIBUTES)) and np.all(labels.style == 0)
    assert np.all(render(6, "portrait", 40, seed=1)[1].style == 1)


def test_allowed_levels_are_respected():
    _, labels = render(200, "photo", 16, seed=2, allowed={"skin": (3, 4), "expression": (2,)})
    assert set(labels.skin.tolist()) == {3, 4} and set(labels.expression.tolist()) == {2}
    assert set(labels.eyewear.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("kwargs", [{"allowed": {"beard": (0,)}}, {"allowed": {"skin": (5,)}},
                                    {"fixed": {"eyewear": 3}}, {"style": "cubist"}, {"size": 8}])
def test_bad_requests_are_refused(kwargs):
    with pytest.raises(ValueError):
        render(2, **{"style": "photo", "size": 32, **kwargs})
