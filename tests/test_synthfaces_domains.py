"""SynthFaces domains: the limited target truly lacks MetFaces' gaps, streams never overlap, a streamed dataset
matches batch renders, and a written image folder round-trips (PNGs, labels.csv, manifest counts)."""
import argparse
import json

import numpy as np
import torch
from PIL import Image

from sdft_lite.data import load_image_folder
from sdft_lite.cli import synthfaces as cli
from sdft_lite.synthfaces.attributes import ATTRIBUTES, FACE_ATTRIBUTES, NUM_LEVELS
from sdft_lite.synthfaces.domains import DomainSpec, FaceDataset, read_domain, write_domain
from sdft_lite.synthfaces.preview import save_preview
from sdft_lite.synthfaces.renderer import to_uint8


def test_limited_target_lacks_smiles_eyewear_and_dark_skin():
    _, labels = DomainSpec.limited_target().render(np.arange(1300), size=16)
    assert set(labels.expression.tolist()) == {0}
    assert set(labels.eyewear.tolist()) == {0}
    assert set(labels.skin.tolist()) == {0, 1}
    assert set(labels.hair.tolist()) == set(range(NUM_LEVELS["hair"]))
    assert set(labels.style.tolist()) == {1}


def test_a_limited_target_with_a_smile_share_differs_only_in_the_smiling_faces():
    """smile_share p: about p of the portraits smile (binomial, 4 sd over 4,000 faces), with either smiling level;
    every other face is the plain limited target's, pixel for pixel, and a smiling face keeps its other labels."""
    plain, scarce = DomainSpec.limited_target(), DomainSpec.limited_target(smile_share=0.02)
    images, labels = plain.render(np.arange(4000), size=16)
    images_s, labels_s = scarce.render(np.arange(4000), size=16)
    smiling = labels_s.expression != 0
    assert abs(smiling.mean() - 0.02) < 4 * np.sqrt(0.02 * 0.98 / 4000)
    assert set(labels_s.expression[smiling].tolist()) == {1, 2}
    assert np.array_equal(images[~smiling], images_s[~smiling]) and not np.array_equal(images[smiling],
                                                                                         images_s[smiling])
    for name in ("skin", "hair", "eyewear", "style"):
        assert np.array_equal(getattr(labels, name), getattr(labels_s, name))
    again, _ = scarce.render(np.arange(3990, 4000), size=16)             # per face, wherever it is asked from
    assert np.array_equal(again, images_s[3990:])


def test_rare_levels_must_be_otherwise_absent_and_a_proper_share():
    import pytest
    with pytest.raises(ValueError, match="overlap the allowed ones"):
        DomainSpec("x", "portrait", (("expression", (0, 1)),), rare=(("expression", (1,), 0.1),))
    with pytest.raises(ValueError, match=r"must be in \(0, 1\)"):
        DomainSpec.limited_target(smile_share=1.5)
    with pytest.raises(ValueError, match="not levels of a face attribute"):
        DomainSpec("x", "portrait", rare=(("mood", (1,), 0.1),))


def test_source_and_full_target_hold_every_level_in_their_style():
    for spec, style in ((DomainSpec.source(), 0), (DomainSpec.full_target(), 1)):
        _, labels = spec.render(np.arange(600), size=16)
        for name in FACE_ATTRIBUTES:
            counts = np.bincount(getattr(labels, name), minlength=NUM_LEVELS[name])
            assert counts.min() >= 600 / NUM_LEVELS[name] * 0.6, (spec.name, name, counts)   # roughly uniform
        assert set(labels.style.tolist()) == {style}


def test_domains_and_splits_never_share_a_face():
    def fingerprints(spec, split):
        images = to_uint8(spec.render(np.arange(300), size=16, split=split)[0])
        return {image.tobytes() for image in images}

    limited, full = DomainSpec.limited_target(), DomainSpec.full_target()
    train, test = fingerprints(limited, "train"), fingerprints(limited, "test")
    assert len(train) == 300 and not train & test
    assert not fingerprints(full, "test") & fingerprints(full, "reference")
    assert limited.stream("train") != full.stream("train")


def test_streamed_dataset_matches_batch_renders_and_loads():
    spec = DomainSpec.full_target()
    dataset = FaceDataset(spec, n=20, size=24, seed=1, split="val")
    images, labels = spec.render(np.arange(20), size=24, seed=1, split="val")
    image, label = dataset[7]
    assert image.shape == (3, 24, 24) and torch.allclose(image, torch.from_numpy(images[7]) * 2 - 1)
    assert torch.equal(label, torch.from_numpy(labels.stack()[7]))
    batch_images, batch_labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=8)))
    assert batch_images.shape == (8, 3, 24, 24)
    assert torch.equal(batch_labels, torch.from_numpy(labels.stack()[:8]))
    assert len(dataset) == 20 and len(FaceDataset(DomainSpec.limited_target())) == 1300


def test_written_folder_round_trips(tmp_path):
    spec = DomainSpec.limited_target()
    out = write_domain(spec, tmp_path / "limited", n=40, size=32, seed=2, split="train")
    assert len(list(out.glob("*.png"))) == 40
    images, labels = read_domain(out)
    expected, expected_labels = spec.render(np.arange(40), size=32, seed=2, split="train")
    assert np.array_equal(images, to_uint8(expected))                  # PNG is lossless
    assert np.array_equal(labels.stack(), expected_labels.stack())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 40 and manifest["domain"] == "limited" and manifest["size"] == 32
    for i, name in enumerate(ATTRIBUTES):
        counts = manifest["level_counts"][name]
        assert sum(counts.values()) == 40
        assert list(counts.values()) == np.bincount(labels.stack()[:, i], minlength=NUM_LEVELS[name]).tolist()
    # the trainer's image-folder loader reads it like any MetFaces folder
    assert load_image_folder(out, 32).images.shape == (40, 3, 32, 32)


def test_cli_render_and_preview(tmp_path):
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["synthfaces", "render", "--domain", "full", "--n", "12", "--size", "16",
                              "--seed", "4", str(tmp_path / "full")])
    assert args.func(args) == 0
    assert json.loads((tmp_path / "full" / "manifest.json").read_text())["count"] == 12
    path = save_preview(tmp_path / "grid.png", size=32, count=5, zoom=2)
    assert Image.open(path).size == (2 * (5 * 34 - 2), 2 * (3 * 34 - 2))
