"""SDEdit, EGSDE, the low-pass filter and DDIB (sdft_lite.editing) on CPU stand-ins.

Identities are exact (atol 0) where the same floating-point operations run in the same order; formula checks
against hand-written loops use 1e-5 (float32); the ODE round trip uses an analytic ε for Gaussian data, for
which DDIM's only error is discretisation, so it must shrink as steps grow.
"""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from sdft_lite.diffusion import q_sample
from sdft_lite.editing.ddib import ddib_decode, ddib_encode, ddib_translate, paired_samples, save_pair_grid, save_pairs
from sdft_lite.editing.dse import EncoderClassifier
from sdft_lite.editing.egsde import (EGSDEConfig, egsde_ancestral, egsde_ddim, energy_gradient, faithfulness_energy,
                                     realism_energy, spatial_cosine_similarity)
from sdft_lite.editing.lowpass import LowPass
from sdft_lite.editing.sdedit import sdedit_ancestral, sdedit_ddim
from sdft_lite.sample import generate
from sdft_lite.schedule import make_schedule, respace
from sdft_lite.unet import UNetConfig
from tests.helpers import ToyEpsModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


DDIM40 = respace(make_schedule(), "ddim40")
FULL = make_schedule()
MICRO = UNetConfig(image_size=16, num_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_resolutions="",
                   learn_sigma=True, use_scale_shift_norm=True, resblock_updown=True)


def read_pairs(folder):
    """(inputs, outputs, names) of a pairs/ folder; input/ and output/ must hold the same file names."""
    names = sorted(p.name for p in (folder / "input").glob("*.png"))
    assert names == sorted(p.name for p in (folder / "output").glob("*.png"))

    def load(sub):
        return torch.stack([torch.from_numpy(np.array(Image.open(folder / sub / n).convert("RGB"))).permute(2, 0, 1)
                            for n in names]).float() / 127.5 - 1
    return load("input"), load("output"), names


def images(n=2, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8


def gaussian(n=2, size=16, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


class NeverCalled(torch.nn.Module):
    def forward(self, x, t):
        raise AssertionError("the model must not be called")


class Recording(torch.nn.Module):
    """Wraps a model and records the original timesteps it is called with."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x, t):
        self.calls.append(int(t[0]))
        return self.model(x, t)


class GaussianEps(torch.nn.Module):
    """The exact ε-prediction for data ~ N(0, σ²I): E[ε | x_t] = √(1−ᾱ_t) x_t / (ᾱ_t σ² + 1 − ᾱ_t)."""

    def __init__(self, sigma=0.5):
        super().__init__()
        self.sigma = sigma
        self.register_buffer("abar", make_schedule().alphas_cumprod)

    def forward(self, x, t):
        abar = self.abar[t].reshape(-1, 1, 1, 1)
        return ((1 - abar).sqrt() * x / (abar * self.sigma ** 2 + 1 - abar)).to(x.dtype)


# ---- the low-pass filter --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [32, 64, 256])  # shrink factors 4, 8, 32
@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_lowpass_keeps_constants_and_removes_a_checkerboard(size, mode):
    lpf = LowPass(mode=mode)
    constant = torch.full((1, 3, size, size), 0.3)
    torch.testing.assert_close(lpf(constant), constant, rtol=0, atol=1e-6)
    i = torch.arange(size)
    checkerboard = ((i[:, None] + i[None, :]) % 2 * 2 - 1).float().expand(1, 3, size, size)
    assert lpf(checkerboard).abs().max() < 0.01  # amplitude 1 → below 1 %
    assert lpf(checkerboard).shape == checkerboard.shape


def test_lowpass_keeps_egsde_grid_at_every_size():
    assert LowPass.from_down_factor(256) == LowPass(8)  # EGSDE's down_N = 32 at 256 px
    assert LowPass.from_down_factor(32, down_factor=32).resolution == 1
    small = images(1, 8)
    torch.testing.assert_close(LowPass(8)(small), small, rtol=0, atol=0)  # nothing to remove at 8 px
    with pytest.raises(ValueError):
        LowPass(0)


# ---- SDEdit -------------------------------------------------------------------------------------------------

def test_sdedit_from_t0_zero_returns_the_input():
    x0 = images()
    assert torch.equal(sdedit_ancestral(NeverCalled(), x0, FULL, t0=0, generator=torch.Generator()), x0)
    noise = gaussian()
    out = sdedit_ddim(NeverCalled(), x0, DDIM40, t0=0, noise=noise)  # perturbed to position 0, no step left
    assert torch.equal(out, q_sample(DDIM40, x0, torch.zeros(2, dtype=torch.long), noise))
    assert (out - x0).abs().max() < 5 * math.sqrt(1 - float(DDIM40.alphas_cumprod[0]))


def test_sdedit_ddim_runs_the_authors_steps(toy_model):
    """ddim40, t0 = 500: q_sample at position 20 (t = 500), then steps at t = 475, 450, ..., 0."""
    model = Recording(toy_model)
    x0, noise = images(), gaussian()
    out = sdedit_ddim(model, x0, DDIM40, t0=500, noise=noise)
    assert model.calls == list(range(475, -1, -25))
    model.calls.clear()
    matched = sdedit_ddim(model, x0, DDIM40, t0=500, noise=noise, match_noise_level=True)
    assert model.calls == list(range(500, -1, -25))
    assert not torch.allclose(out, matched)


def test_sdedit_ancestral_is_the_published_update(toy_model):
    """Against a hand-written SDEdit loop: x = √ᾱ_{t0−1} x0 + √(1−ᾱ_{t0−1}) e, then
    x ← (x − β_i/√(1−ᾱ_i) ε)/√α_i + √β̃_i z for i = t0−1..0 (no noise at i = 0), two repeats."""
    x0, t0 = images(), 30
    betas, abar = FULL.betas.float(), FULL.alphas_cumprod.float()
    posterior_var = FULL.posterior_variance.float()
    g = torch.Generator().manual_seed(7)
    x = x0
    for _ in range(2):
        e = torch.randn(x.shape, generator=g)
        x = abar[t0 - 1].sqrt() * x + (1 - abar[t0 - 1]).sqrt() * e
        for i in range(t0 - 1, -1, -1):
            eps = toy_model(x, torch.full((2,), i))[:, :3]
            mean = (x - betas[i] / (1 - abar[i]).sqrt() * eps) / (1 - betas[i]).sqrt()
            z = torch.randn(x.shape, generator=g)
            x = mean + (posterior_var[i].sqrt() * z if i > 0 else 0)
    ours = sdedit_ancestral(toy_model, x0, FULL, t0=t0, repeats=2, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-5)


# ---- EGSDE --------------------------------------------------------------------------------------------------

def test_egsde_without_energies_equals_sdedit(toy_model):
    x0, noise = images(), gaussian()
    off = EGSDEConfig(lambda_s=0.0, lambda_i=0.0)
    assert torch.equal(egsde_ddim(toy_model, None, x0, DDIM40, 500, off, noise),
                       sdedit_ddim(toy_model, x0, DDIM40, 500, noise))
    ours = egsde_ancestral(toy_model, None, x0, FULL, 25, off, repeats=2, noise=noise,
                           generator=torch.Generator().manual_seed(3))
    theirs = sdedit_ancestral(toy_model, x0, FULL, 25, repeats=2, noise=noise,
                              generator=torch.Generator().manual_seed(3))
    assert torch.equal(ours, theirs)


def test_spatial_cosine_similarity_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]]).T.reshape(1, 2, 1, 2)  # locations: (1, 0) and (0, 2)
    b = torch.tensor([[3.0, 0.0], [1.0, 1.0]]).T.reshape(1, 2, 1, 2)  # locations: (3, 0) and (1, 1)
    expected = (1.0 + 1 / math.sqrt(2)) / 2  # cos = 1 at the first location, 1/√2 at the second
    torch.testing.assert_close(spatial_cosine_similarity(a, b), torch.tensor([expected]), rtol=0, atol=1e-6)
    f = torch.randn(3, 8, 4, 4)
    torch.testing.assert_close(spatial_cosine_similarity(f, f), torch.ones(3), rtol=0, atol=1e-6)
    torch.testing.assert_close(spatial_cosine_similarity(f, -f), -torch.ones(3), rtol=0, atol=1e-6)
    assert torch.equal(spatial_cosine_similarity(torch.zeros(1, 8, 4, 4), f[:1]), torch.zeros(1))  # eps, no NaN


def test_energy_gradients_point_downhill():
    """Stepping against λs∇Es lowers the feature similarity; against λi∇Ei, the low-pass distance."""
    torch.manual_seed(0)
    dse = EncoderClassifier(MICRO).eval()
    y, x_k, t = images(seed=2), images(seed=3), torch.tensor([300, 300])
    for config, energy in ((EGSDEConfig(lambda_s=1.0, lambda_i=0.0), lambda z: realism_energy(dse, z, x_k, t)),
                           (EGSDEConfig(lambda_s=0.0, lambda_i=1.0),
                            lambda z: faithfulness_energy(LowPass(), z, x_k))):
        grad = energy_gradient(y, x_k, t, dse, config)
        step = 1e-2 / grad.abs().max()
        with torch.no_grad():
            assert (energy(y - step * grad) < energy(y)).all()


def test_faithfulness_guidance_keeps_the_source_layout(toy_model):
    """With λi > 0 the DDIM-40 translation's 8x8 thumbnail is closer to the source's than plain SDEdit's."""
    x0, noise = images(4, 32), gaussian(4, 32)
    plain = egsde_ddim(toy_model, None, x0, DDIM40, 500, EGSDEConfig(0.0, 0.0), noise).clamp(-1, 1)
    guided = egsde_ddim(toy_model, None, x0, DDIM40, 500, EGSDEConfig(0.0, 2.0), noise).clamp(-1, 1)
    lpf = LowPass()
    assert (faithfulness_energy(lpf, guided, x0) < faithfulness_energy(lpf, plain, x0)).all()


class RecordingDSE(torch.nn.Module):
    """A stand-in DSE: F(x, t) = x·w; records the timesteps and the source images x_k it is given."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(0.5))
        self.timesteps, self.sources = [], []

    def features(self, x, t):
        if not x.requires_grad:  # the re-perturbed source x_k (computed without gradient)
            self.timesteps.append(int(t[0]))
            self.sources.append(x)
        return x * self.weight


def test_egsde_guides_at_the_right_timesteps_with_the_shared_noise(toy_model):
    x0, noise = images(), gaussian()
    dse = RecordingDSE()
    egsde_ddim(toy_model, dse, x0, DDIM40, 500, EGSDEConfig(lambda_s=1.0), noise)
    assert dse.timesteps == list(range(475, 0, -25))  # original timesteps; none at position 0 (range_t = 0)
    for k, x_k in zip(range(19, 0, -1), dse.sources):  # x_k = √ᾱ_k x0 + √(1−ᾱ_k) e with the start's e
        torch.testing.assert_close(x_k, q_sample(DDIM40, x0, torch.full((2,), k), noise), rtol=0, atol=0)
    dse = RecordingDSE()
    egsde_ddim(toy_model, dse, x0, DDIM40, 500, EGSDEConfig(lambda_s=1.0, dse_timestep="position",
                                                            source_noise="fresh"), noise)
    assert dse.timesteps == list(range(19, 0, -1))  # the SDFT code's quirk: the spaced index
    assert not torch.allclose(dse.sources[0], q_sample(DDIM40, x0, torch.full((2,), 19), noise))
    dse = RecordingDSE()
    egsde_ancestral(toy_model, dse, x0, FULL, 5, EGSDEConfig(lambda_s=1.0), generator=torch.Generator())
    assert dse.timesteps == [4, 3, 2, 1, 0]  # EGSDE guides every step, the last included


def test_egsde_needs_a_dse_for_realism(toy_model):
    with pytest.raises(ValueError, match="dse"):
        egsde_ddim(toy_model, None, images(), DDIM40, 500, EGSDEConfig(lambda_s=1.0), gaussian())


# ---- DDIB and shared-noise pairs ----------------------------------------------------------------------------

def test_ddim_inversion_round_trip_error_falls_with_steps():
    model = GaussianEps(sigma=0.5)
    x0 = 0.5 * gaussian(4, 8, seed=5)
    errors = []
    for steps in ("ddim10", "ddim50", "ddim250"):
        schedule = respace(make_schedule(), steps)
        latent = ddib_encode(model, x0, schedule)
        errors.append(float((ddib_decode(model, latent, schedule, clip_denoised=False) - x0).abs().max()))
    # DDIM is Euler's method on the ODE: first order, so 5x the steps must cut the error by well over 3x
    assert errors[1] < errors[0] / 3 and errors[2] < errors[1] / 3


def test_ddib_encodes_with_the_source_and_decodes_with_the_target():
    source, target = Recording(GaussianEps(0.5)), Recording(ToyEpsModel(seed=3))
    schedule = respace(make_schedule(), "ddim10")
    out = ddib_translate(source, target, 0.5 * gaussian(2, 8), schedule)
    assert source.calls == list(range(0, 900, 100))  # positions 0..K−2: the latent lands at t = 900
    assert target.calls == list(range(900, -1, -100))  # decoding starts where encoding ended
    assert out.shape == (2, 3, 8, 8)
    source.calls.clear()
    ddib_encode(source, gaussian(1, 8), schedule, encode_to_zero_snr=True)
    assert source.calls == list(range(0, 1000, 100))  # DDIB's/guided-diffusion's extra step onto ᾱ = 0


def test_paired_samples_share_x_T_and_match_sdft_lite_sample(tmp_path):
    models = {"source": ToyEpsModel(seed=0), "target": ToyEpsModel(seed=1)}
    schedule = respace(make_schedule(), "ddim10")
    pairs = paired_samples(models, 5, (3, 8, 8), schedule, seed=4, batch=2)
    again = paired_samples({"target": models["target"]}, 5, (3, 8, 8), schedule, seed=4, batch=5)
    assert torch.equal(pairs["target"], again["target"])  # image i's x_T does not depend on the batch size
    reference = generate(models["source"], 5, 8, "ddim10", seed=4, batch_size=3)
    torch.testing.assert_close(pairs["source"], reference, rtol=0, atol=1e-6)  # same seeds as `sdft-lite sample`

    grid = save_pair_grid(pairs, tmp_path / "pairs.png", rows=3)
    assert Image.open(grid).size == (2 + 2 * (8 + 2), 12 + 2 + 3 * (8 + 2))  # 2 columns, header + 3 rows
    folders = save_pairs(pairs, tmp_path / "out")
    assert list(folders) == ["target"]
    inputs, outputs, names = read_pairs(folders["target"])
    assert names == [f"{i:06d}.png" for i in range(5)]
    assert (inputs - pairs["source"]).abs().max() <= 1 / 127.5 and (outputs - pairs["target"]).abs().max() <= 1 / 127.5
    assert len(list((tmp_path / "out" / "samples" / "source").glob("*.png"))) == 5
