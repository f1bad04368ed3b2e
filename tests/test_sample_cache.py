"""The sample cache: computed once per (weights, settings, device type), never handed to another model, off with
SDFT_SAMPLE_CACHE=0, robust to a damaged file; and the benchmark's Evaluator gives the same samples, metrics and
translations from the cache as without it."""
import tempfile
from pathlib import Path

import pytest
import torch

from sdft_lite.experiments import benchmark, sample_cache
from sdft_lite.experiments.benchmark import BenchmarkConfig, Evaluator, Instruments, prepare_data
from sdft_lite.experiments.sample_cache import cache_path, cached_images, tensor_digest, weights_digest
from sdft_lite.experiments.zoo import source_model
from sdft_lite.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


@pytest.fixture(autouse=True)
def fresh_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SDFT_LITE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SDFT_SAMPLE_CACHE", raising=False)


class Counter:
    """compute(): a new random tensor each call, counted."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return torch.randn(2, 3, 4, 4)


def test_digest_follows_every_byte_of_the_weights():
    model = torch.nn.Conv2d(3, 4, 3)
    same = torch.nn.Conv2d(3, 4, 3)
    same.load_state_dict(model.state_dict())
    assert weights_digest(model) == weights_digest(same)
    with torch.no_grad():
        same.bias[2] = torch.nextafter(same.bias[2], torch.tensor(2.0))   # one float32 ulp
    assert weights_digest(model) != weights_digest(same)
    assert tensor_digest(torch.zeros(4)) != tensor_digest(torch.zeros(2, 2))       # shape counts
    assert tensor_digest(torch.zeros(4)) != tensor_digest(torch.zeros(4, dtype=torch.float64))
    assert len(tensor_digest(torch.tensor(3.0))) == 64                              # a 0-dim tensor


def test_computed_once_then_loaded():
    model, compute = torch.nn.Linear(2, 2), Counter()
    first, loaded_first = cached_images("samples", model, {"steps": "ddim20"}, "cpu", compute)
    second, loaded_second = cached_images("samples", model, {"steps": "ddim20"}, "cpu", compute)
    assert compute.calls == 1 and (loaded_first, loaded_second) == (False, True)
    assert torch.equal(first, second)


def test_other_settings_weights_device_or_kind_recompute():
    model, compute = torch.nn.Linear(2, 2), Counter()
    cached_images("samples", model, {"steps": "ddim20"}, "cpu", compute)
    cached_images("samples", model, {"steps": "ddim40"}, "cpu", compute)
    cached_images("sdedit", model, {"steps": "ddim20"}, "cpu", compute)
    cached_images("samples", torch.nn.Linear(2, 2), {"steps": "ddim20"}, "cpu", compute)
    assert compute.calls == 4
    paths = {cache_path("samples", model, {"steps": "ddim20"}, device) for device in ("cpu", "cuda", "cuda:1")}
    assert len(paths) == 2                                    # the device type is in the key, not its index


def test_off_with_the_environment_variable(monkeypatch):
    monkeypatch.setenv("SDFT_SAMPLE_CACHE", "0")
    model, compute = torch.nn.Linear(2, 2), Counter()
    for _ in range(2):
        _, loaded = cached_images("samples", model, {}, "cpu", compute)
        assert not loaded
    assert compute.calls == 2
    assert not cache_path("samples", model, {}, "cpu").exists()


def test_a_damaged_file_is_recomputed_and_replaced():
    model, compute = torch.nn.Linear(2, 2), Counter()
    path = cache_path("samples", model, {}, "cpu")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    images, loaded = cached_images("samples", model, {}, "cpu", compute)
    assert not loaded and compute.calls == 1
    assert torch.equal(torch.load(path, weights_only=True), images)


def test_evaluator_gives_the_same_results_from_the_cache(monkeypatch):
    config = BenchmarkConfig.quick(num_noises=6, sample_steps="ddim2", num_sdedit=4, sdedit_steps="ddim4",
                                   num_reference=16, batch_size=4, finetune=TrainConfig.synthfaces_quick(num_images=8))
    model = source_model()
    with tempfile.TemporaryDirectory() as workdir:
        data = prepare_data(config, Path(workdir), model.config.image_size)
    instruments = Instruments.load(data, torch.device("cpu"))
    generated = []
    real_generate = benchmark.generate
    monkeypatch.setattr(benchmark, "generate", lambda *a, **k: generated.append(1) or real_generate(*a, **k))

    def evaluate(cache):
        evaluator = Evaluator(config, data, instruments, torch.device("cpu"), model.config.image_size, cache=cache)
        return evaluator.evaluate(model), evaluator.cache_hits

    (plain_metrics, plain_samples, plain_sdedit), _ = evaluate(cache=False)
    (_, first_samples, _), first_hits = evaluate(cache=True)
    (metrics, samples, sdedit), hits = evaluate(cache=True)
    assert len(generated) == 2 and (first_hits, hits) == (0, 2)   # samples and SDEdit outputs loaded
    assert torch.equal(samples, plain_samples) and torch.equal(first_samples, plain_samples)
    assert torch.equal(sdedit, plain_sdedit)
    assert metrics == pytest.approx(plain_metrics, nan_ok=True)
    assert len(list((sample_cache.cache_dir() / "samples").glob("*.pt"))) == 2
