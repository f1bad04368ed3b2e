"""Shared test fixtures: small deterministic stand-in networks and the guided-diffusion oracle."""
import warnings

import pytest
import torch

from tests.helpers import ToyEpsModel

warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture
def toy_model():
    return ToyEpsModel()


@pytest.fixture
def gd():
    """guided-diffusion-sdk's diffusion modules (the reference implementation used as oracle)."""
    from guided_diffusion import gaussian_diffusion, respace, script_util
    return gaussian_diffusion, respace, script_util


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module of tiny networks: they gain nothing from two, and on a busy 2-core
    CPU two threads thrash. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def metric_caches(tmp_path, monkeypatch):
    """Every cache the metrics read, pointed at empty temporary folders."""
    from sdft_lite.metrics import weights
    dirs = {name: tmp_path / name for name in ("cleanfid", "torch", "clip", "home")}
    monkeypatch.setattr(weights, "cleanfid_cache_dir", lambda: dirs["cleanfid"])
    monkeypatch.setattr(weights, "openai_clip_cache_dir", lambda: dirs["clip"])
    monkeypatch.setenv("TORCH_HOME", str(dirs["torch"]))
    monkeypatch.setenv("SDFT_LITE_HOME", str(dirs["home"]))
    return dirs
