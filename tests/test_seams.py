"""The seams of the core, each with a test: weightings as callables, the auxiliary-sample selector, the
prediction type (ε, v, x0) and the sampler table.

Tolerances: float64 identities 1e-12; float32 networks 1e-5 (absolute, outputs of order 1), float32 samplers 1e-3
(≈ 8× the measured 1.3e-4 after 10 DDIM steps, where x̂_0 = (x_t − √(1−ᾱ) ε)/√ᾱ amplifies rounding); the skipping
selector changes the loss by less than its threshold times the largest squared gap (bounded here by 10)."""
import pytest
import torch

from helpers import tiny_unet

from sdft_lite.diffusion import (call_model, eps_x0_from_prediction, prediction_target, q_sample, raw_output,
                                 training_losses)
from sdft_lite.sample import generate
from sdft_lite.sampling import SAMPLERS, ddim_sample
from sdft_lite.schedule import make_schedule, respace
from sdft_lite.sdft import SDFTConfig, SkipLightAux, every_aux, sdft_losses
from sdft_lite.unet import UNetModel
from sdft_lite.weighting import P2, Constant, MinSNR, parse_weighting, weighting_spec, weights_at

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


def tiny_model(seed: int, **changes) -> UNetModel:
    return tiny_unet(seed, **changes).eval()


# ---- weightings ---------------------------------------------------------------------------------------------
def test_weighting_names_round_trip_and_a_users_own_callable_works():
    for weighting in (P2(3.0), P2(50.0, 2.0), MinSNR(5.0), Constant()):
        assert parse_weighting(weighting_spec(weighting)) == weighting
    assert parse_weighting("p2:3") == P2(3.0) and parse_weighting("min_snr") == MinSNR()
    with pytest.raises(ValueError, match="unknown weighting 'p3'"):
        parse_weighting("p3:1")
    s = make_schedule()
    t = torch.tensor([3, 400, 999])
    halved = lambda snr: 0.5 * torch.ones_like(snr)   # noqa: E731
    torch.testing.assert_close(weights_at(halved, s, t), torch.full((3,), 0.5))
    model, teacher = tiny_model(0), tiny_model(1)
    x0, noise = torch.rand(3, 3, 32, 32) * 2 - 1, torch.randn(3, 3, 32, 32)
    own = sdft_losses(model, teacher, s, x0, t, noise, SDFTConfig(1.0, halved, 0.0))
    p2_zero = sdft_losses(model, teacher, s, x0, t, noise, SDFTConfig(1.0, Constant(), 0.0))
    torch.testing.assert_close(own["distill"], 0.5 * p2_zero["distill"], rtol=1e-6, atol=0)


# ---- the auxiliary-sample selector --------------------------------------------------------------------------
def test_skipping_light_aux_samples_changes_the_loss_by_less_than_its_threshold():
    s = make_schedule()
    t = torch.tensor([5, 100, 300, 600, 800, 900, 950, 999])
    model, teacher = tiny_model(0), tiny_model(1)
    x0, noise = torch.rand(8, 3, 32, 32) * 2 - 1, torch.randn(8, 3, 32, 32)
    config = SDFTConfig.symmetric(1.0)
    exact = sdft_losses(model, teacher, s, x0, t, noise, config, select_aux=every_aux)
    selector = SkipLightAux(threshold=1e-6, bucket=1)
    kept, scale = selector(config, s, t)
    weight = weights_at(config.aux_weighting, s, t)
    assert set(kept.tolist()) == set(torch.nonzero(weight >= 1e-6).flatten().tolist()) and 0 < len(kept) < 8
    assert torch.equal(scale, torch.ones(len(kept)))
    skipped = sdft_losses(model, teacher, s, x0, t, noise, config, select_aux=selector)
    assert (exact["aux"] - skipped["aux"]).abs().max() < 1e-6 * 10
    torch.testing.assert_close(exact["aux"][kept], skipped["aux"][kept], rtol=1e-5, atol=1e-9)
    assert len(SkipLightAux(1e-6, bucket=4)(config, s, t)[0]) % 4 == 0


# ---- prediction types ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_a_prediction_and_its_target_give_back_eps_and_x0(prediction):
    s = make_schedule()
    t = torch.tensor([0, 10, 500, 999])
    x0, noise = (torch.randn(4, 3, 8, 8, dtype=torch.float64) for _ in range(2))
    x_t = q_sample(s, x0, t, noise)
    target = prediction_target(prediction, s, x0, noise, t)
    eps, x0_hat = eps_x0_from_prediction(prediction, s, target, x_t, t)
    torch.testing.assert_close(eps[1:], noise[1:], rtol=0, atol=1e-9)   # t = 0: x0 → ε divides by √(1−ᾱ_0)
    torch.testing.assert_close(x0_hat[:3], x0[:3], rtol=0, atol=1e-9)   # t = 999: ε → x0 divides by √ᾱ_999
    if prediction == "v":   # Salimans & Ho: v = √ᾱ ε − √(1−ᾱ) x0, written out
        abar = s.alphas_cumprod[t].view(-1, 1, 1, 1)
        torch.testing.assert_close(target, abar.sqrt() * noise - (1 - abar).sqrt() * x0, rtol=0, atol=1e-12)


class AsV(torch.nn.Module):
    """An ε-model wrapped to output v = √ᾱ_t ε − √(1−ᾱ_t) x̂_0 (variance channels unchanged)."""

    prediction = "v"

    def __init__(self, model):
        super().__init__()
        self.model, self.schedule = model, make_schedule()

    def forward(self, x, t):
        out = self.model(x, t).double()
        eps, rest = out[:, :3], out[:, 3:]
        abar = self.schedule.alphas_cumprod[t].view(-1, 1, 1, 1)   # float64: the round trip adds no rounding
        x0 = (x.double() - (1 - abar).sqrt() * eps) / abar.sqrt()
        return torch.cat([abar.sqrt() * eps - (1 - abar).sqrt() * x0, rest], dim=1).float()


def test_an_eps_model_wrapped_to_output_v_samples_the_same_through_the_v_path():
    model = tiny_model(0)
    wrapped = AsV(model)
    s = respace(make_schedule(), "ddim10")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 5)
    with torch.no_grad():
        assert not torch.allclose(raw_output(wrapped, x, s, t), raw_output(model, x, s, t))
        torch.testing.assert_close(call_model(wrapped, x, s, t), call_model(model, x, s, t), rtol=0, atol=1e-5)
        a, b = ddim_sample(model, x, s), ddim_sample(wrapped, x, s)
    # float32 DDIM divides ε by √ᾱ_t (≈ 1/156 at t = 999): measured max |a − b| 1.3e-4 over 10 steps
    torch.testing.assert_close(a, b, rtol=0, atol=1e-3)
    torch.testing.assert_close(generate(model, 2, 32, "ddim5"), generate(wrapped, 2, 32, "ddim5"), rtol=0, atol=1e-3)


def test_v_prediction_trains_on_its_target_and_sdft_distills_in_v_space():
    student, teacher = tiny_model(0, prediction="v"), tiny_model(1, prediction="v")
    assert student.prediction == "v"
    s = make_schedule()
    t = torch.tensor([50, 500, 950])
    x0, noise = torch.rand(3, 3, 32, 32) * 2 - 1, torch.randn(3, 3, 32, 32)
    x_t = q_sample(s, x0, t, noise)
    with torch.no_grad():
        terms = sdft_losses(student, teacher, s, x0, t, noise, SDFTConfig.symmetric(1.0, lambda_aux=0.0), "v")
        v_student, v_teacher = student(x_t, t)[:, :3], teacher(x_t, t)[:, :3]
        v_target = prediction_target("v", s, x0, noise, t)
        w_d = (1 - s.alphas_cumprod[t]).pow(3).float()
        torch.testing.assert_close(terms["mse"], ((v_target - v_student) ** 2).mean((1, 2, 3)), rtol=1e-5, atol=0)
        torch.testing.assert_close(terms["distill"], w_d * ((v_teacher - v_student) ** 2).mean((1, 2, 3)),
                                   rtol=1e-5, atol=1e-12)
        torch.testing.assert_close(training_losses(student, s, x0, t, noise)["mse"], terms["mse"], rtol=1e-6, atol=0)


# ---- samplers -------------------------------------------------------------------------------------------------
def test_the_sampler_table_and_generate_sampler_seam():
    assert set(SAMPLERS) == {"ddim", "ancestral"}
    model = tiny_model(0)
    ddim = generate(model, 2, 32, "ddim5", seed=3)
    ancestral = generate(model, 2, 32, "ddim5", seed=3, sampler="ancestral")
    assert ddim.shape == ancestral.shape == (2, 3, 32, 32) and not torch.allclose(ddim, ancestral)
    torch.testing.assert_close(ancestral, generate(model, 2, 32, "ddim5", seed=3, sampler="ancestral"), rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        generate(model, 1, 32, "ddim5", sampler="euler")
