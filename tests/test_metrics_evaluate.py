"""``sdft-lite evaluate`` end to end on tiny generated folders, with a custom FID/KID extractor, a random LPIPS
trunk and a tiny CLIP file; every number is checked against the library functions it reports."""
import argparse
import json

import pytest
import torch

from sdft_lite.metrics import fid
from sdft_lite.metrics.clip_direction import ClipEncoders, compute_sdir
from sdft_lite.cli.evaluate import add_parser
from sdft_lite.metrics.evaluate import PairedSettings, evaluate
from sdft_lite.metrics.fidelity import compute_fidelity
from sdft_lite.metrics.images import list_images, load_images
from sdft_lite.metrics.perceptual import build_lpips, compute_lpips
from sdft_lite.sample import save_images
from tests.test_metrics_clip import write_tiny_clip
from tests.test_metrics_fid import _tiny_extractor_factory


@pytest.fixture
def folders(tmp_path):
    g = torch.Generator().manual_seed(0)
    save_images(torch.rand(24, 3, 16, 16, generator=g) * 2 - 1, tmp_path / "samples")
    save_images(torch.rand(20, 3, 16, 16, generator=g) * 1.5 - 0.5, tmp_path / "ref")
    source = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    edited = (source + 0.2 * torch.randn(3, 3, 32, 32, generator=g)).clamp(-1, 1)
    save_images(source, tmp_path / "pairs" / "input")
    save_images(edited, tmp_path / "pairs" / "output")
    return tmp_path


@pytest.fixture
def tiny_extractor(monkeypatch):
    monkeypatch.setitem(fid._EXTRACTORS, "test-tiny", _tiny_extractor_factory)


def _run(argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["evaluate", *argv])
    return args.func(args)


def test_cli_end_to_end(folders, tiny_extractor, capsys):
    clip_path, _ = write_tiny_clip(folders)
    out = folders / "results.json"
    status = _run(["--samples", str(folders / "samples"), "--ref", str(folders / "ref"),
                   "--pairs", str(folders / "pairs"), "--metrics", "fid", "kid", "lpips", "psnr", "ssim", "sdir",
                   "--extractor", "test-tiny", "--lpips-net", "alex", "--lpips-backbone", "random",
                   "--source-text", "face", "--target-text", "smiling face", "--clip-weights", str(clip_path),
                   "--device", "cpu", "--batch-size", "2", "--out", str(out)])
    assert status == 0
    report = json.loads(out.read_text())
    metrics = report["metrics"]
    assert list(metrics) == ["fid", "kid", "lpips", "psnr", "ssim", "sdir"] and report["unavailable"] == {}

    fid_result, kid_result = fid.compute_fid_kid(folders / "samples", folders / "ref", "test-tiny", device="cpu")
    assert metrics["fid"]["value"] == pytest.approx(fid_result.fid, rel=1e-12)
    assert metrics["kid"]["value"] == pytest.approx(kid_result.kid_x1e3, rel=1e-12)
    assert metrics["fid"]["comparable_with_paper"] == "no" and metrics["fid"]["n"] == "24 vs 20"

    inputs = load_images(list_images(folders / "pairs" / "input"))
    outputs = load_images(list_images(folders / "pairs" / "output"))
    fidelity = compute_fidelity(outputs, inputs)
    assert metrics["psnr"]["value"] == pytest.approx(fidelity.psnr_db, rel=1e-12)
    assert metrics["ssim"]["value"] == pytest.approx(fidelity.ssim, rel=1e-12)
    lpips_result = compute_lpips(outputs, inputs, model=build_lpips("alex", "random", device="cpu"))
    assert metrics["lpips"]["value"] == pytest.approx(lpips_result.lpips, rel=1e-5)
    sdir = compute_sdir(inputs, outputs, "face", "smiling face", ClipEncoders.from_file(path=clip_path))
    # float32 CLIP embeddings, batched by 2 in the command and by 3 here: agreement to float32 round-off
    assert metrics["sdir"]["value"] == pytest.approx(sdir.s_dir, abs=1e-6)

    table = capsys.readouterr().out
    assert "NOT comparable with the paper's Inception numbers" in table
    assert "RANDOM TRUNK" in table and "KID×10³" in table


def test_authors_scaling_is_marked_comparable(folders):
    report = evaluate(pairs_dir=folders / "pairs", metrics=["psnr"], print_table=False,
                      paired=PairedSettings(authors_scaling=True))
    correct = evaluate(pairs_dir=folders / "pairs", metrics=["psnr"], print_table=False)
    assert report.rows[0].vs_paper == "yes" and correct.rows[0].vs_paper == "no"
    assert 5.0 < correct.rows[0].value - report.rows[0].value < 7.0  # ≈ 6 dB, see test_metrics_fidelity


def test_default_metrics_follow_the_inputs(folders):
    report = evaluate(pairs_dir=folders / "pairs", print_table=False,
                      paired=PairedSettings(lpips_net="alex", lpips_backbone="random"))
    assert [r.metric for r in report.rows] == ["lpips", "psnr", "ssim"]


def test_input_errors_are_explicit(folders):
    with pytest.raises(ValueError, match="--samples and --ref"):
        evaluate(pairs_dir=folders / "pairs", metrics=["fid"], print_table=False)
    with pytest.raises(ValueError, match="--source-text"):
        evaluate(pairs_dir=folders / "pairs", metrics=["sdir"], print_table=False)
    (folders / "pairs" / "input" / "000000.png").rename(folders / "pairs" / "input" / "extra.png")
    with pytest.raises(ValueError, match="same file names"):
        evaluate(pairs_dir=folders / "pairs", metrics=["psnr"], print_table=False)
