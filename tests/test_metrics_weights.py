"""Missing weights: one clear error per metric naming the file, its source and its destination, with the network
blocked to prove nothing is fetched; and present weights (files the tests make) load from the metric_caches offline."""
import argparse
import json
import socket
import urllib.request

import pytest
import torch

from sdft_lite.metrics import fid, weights
from sdft_lite.metrics.clip_direction import ClipEncoders, compute_sdir
from sdft_lite.cli.evaluate import add_parser
from sdft_lite.metrics.identity import load_arcface
from sdft_lite.metrics.perceptual import build_lpips
from sdft_lite.metrics.weights import MissingWeightsError


class NetworkAttempted(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Every way out (sockets, urllib, requests) raises NetworkAttempted and is recorded."""
    import requests

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise NetworkAttempted(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)
    return attempts


def _assert_names(error: MissingWeightsError, filename: str, source: str, destination):
    message = str(error)
    assert isinstance(error, FileNotFoundError)
    assert filename in message and source in message and str(destination) in message, message


def _images(n=4, size=16):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_inception_missing(metric_caches, no_network):
    with pytest.raises(MissingWeightsError) as info:
        fid.compute_fid_kid(_images(), _images(), device="cpu")
    _assert_names(info.value, "inception-2015-12-05.pt", "nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch",
                  metric_caches["cleanfid"] / "inception-2015-12-05.pt")
    assert no_network == []


@pytest.mark.parametrize("net, filename", [("vgg", "vgg16-397923af.pth"), ("alex", "alexnet-owt-7be5be79.pth")])
def test_lpips_trunk_missing(metric_caches, no_network, net, filename):
    with pytest.raises(MissingWeightsError) as info:
        build_lpips(net)
    _assert_names(info.value, filename, f"download.pytorch.org/models/{filename}",
                  metric_caches["torch"] / "hub" / "checkpoints" / filename)
    assert no_network == []


def test_clip_missing(metric_caches, no_network):
    with pytest.raises(MissingWeightsError) as info:
        ClipEncoders.from_file("ViT-B/32", device="cpu")
    _assert_names(info.value, "ViT-B-32.pt", "openaipublic.azureedge.net/clip/models/",
                  metric_caches["clip"] / "ViT-B-32.pt")
    with pytest.raises(MissingWeightsError):
        compute_sdir(_images(2), _images(2), "face", "smiling face", device="cpu")
    assert no_network == []


def test_arcface_missing(metric_caches, no_network, tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        load_arcface(device="cpu")
    _assert_names(info.value, "model_ir_se50.pth", "TreB1eN/InsightFace_Pytorch",
                  metric_caches["home"] / "model_ir_se50.pth")
    with pytest.raises(MissingWeightsError) as info:
        load_arcface(tmp_path / "elsewhere" / "ir_se50.pth", device="cpu")
    assert str(tmp_path / "elsewhere" / "ir_se50.pth") in str(info.value)
    assert no_network == []


def test_evaluate_reports_missing_inception_and_the_extractor_option(metric_caches, no_network, tmp_path, capsys):
    from sdft_lite.sample import save_images

    save_images(_images(), tmp_path / "samples")
    save_images(_images(), tmp_path / "ref")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["evaluate", "--samples", str(tmp_path / "samples"), "--ref", str(tmp_path / "ref"),
                              "--device", "cpu", "--out", str(tmp_path / "r.json")])
    assert args.func(args) == 2
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["metrics"] == {} and set(report["unavailable"]) == {"fid", "kid"}
    assert "--extractor" in report["unavailable"]["fid"]
    assert "inception-2015-12-05.pt" in capsys.readouterr().out
    assert no_network == []


# ---------------------------------------------------------------------------------------------------------------
# Present files are used from the metric_caches, offline


def test_lpips_uses_the_cached_trunk_offline(metric_caches, no_network):
    """An AlexNet file in $TORCH_HOME/hub/checkpoints is what the LPIPS trunk loads (classifier weights, unused
    by LPIPS, are stored as stride-0 zeros to keep the file small)."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    state = {k: (v if k.startswith("features") else torch.zeros(()).expand(v.shape))
             for k, v in alexnet(weights=None).state_dict().items()}
    folder = metric_caches["torch"] / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(state, folder / "alexnet-owt-7be5be79.pth")
    model = build_lpips("alex", device="cpu")
    assert torch.equal(model.net.slice1[0].weight, state["features.0.weight"])
    assert model.sdft_labels == ("alex", "imagenet")
    assert no_network == []


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script/save deprecation notices
def test_inception_file_is_loaded_by_cleanfid_without_download(metric_caches, no_network):
    """A stand-in TorchScript file with the Inception file's interface (`.layers`: [B, 3, 299, 299] -> 2048-d)
    placed in clean-fid's cache is what the "inception" extractor runs."""

    class Layers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(3, 2048)

        def forward(self, x):
            return self.proj(x.mean(dim=(2, 3)))

    class StandIn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = Layers()

        def forward(self, x):
            return self.layers(x)

    torch.manual_seed(0)
    stand_in = StandIn()
    metric_caches["cleanfid"].mkdir()
    torch.jit.save(torch.jit.script(stand_in), str(metric_caches["cleanfid"] / "inception-2015-12-05.pt"))
    flat = torch.full((2, 3, 16, 16), 0.5)  # uint8 191 everywhere after saving as PNG
    feats, _ = fid.pair_features(flat, flat, "inception", device="cpu")
    with torch.no_grad():
        expected = stand_in.layers(torch.full((1, 3, 299, 299), (191 - 128) / 128)).numpy()[0]
    assert feats.shape == (2, 2048)
    torch.testing.assert_close(torch.from_numpy(feats[0]).float(), torch.from_numpy(expected), rtol=1e-5,
                               atol=1e-5)
    assert no_network == []
