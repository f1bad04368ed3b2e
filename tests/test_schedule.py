"""Schedules and respacing against guided-diffusion (oracle) and closed forms. Tolerance: 1e-12 (float64)."""
import numpy as np
import pytest
import torch

from sdft_lite.schedule import beta_schedule, make_schedule, respace, space_timesteps
from sdft_lite.weighting import P2, MinSNR, min_snr, p2, weights_at

TOL64 = 1e-12


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [1000, 250])
def test_betas_match_guided_diffusion(gd, name, steps):
    gaussian_diffusion, _, _ = gd
    ref = gaussian_diffusion.get_named_beta_schedule(name, steps)
    np.testing.assert_allclose(beta_schedule(name, steps).numpy(), ref, rtol=0, atol=TOL64)


def test_derived_constants_match_guided_diffusion(gd):
    gaussian_diffusion, _, _ = gd
    ref = gaussian_diffusion.GaussianDiffusion(
        betas=gaussian_diffusion.get_named_beta_schedule("linear", 1000),
        model_mean_type=gaussian_diffusion.ModelMeanType.EPSILON,
        model_var_type=gaussian_diffusion.ModelVarType.LEARNED_RANGE,
        loss_type=gaussian_diffusion.LossType.RESCALED_MSE)
    s = make_schedule("linear")
    pairs = {
        "alphas_cumprod": s.alphas_cumprod, "alphas_cumprod_prev": s.alphas_cumprod_prev,
        "alphas_cumprod_next": s.alphas_cumprod_next, "posterior_variance": s.posterior_variance,
        "posterior_log_variance_clipped": s.posterior_log_variance_clipped,
        "posterior_mean_coef1": s.posterior_mean_coef_x0, "posterior_mean_coef2": s.posterior_mean_coef_xt,
    }
    for name, ours in pairs.items():
        np.testing.assert_allclose(ours.numpy(), getattr(ref, name), rtol=1e-12, atol=TOL64, err_msg=name)


@pytest.mark.parametrize("spec", ["ddim40", "ddim25", "ddim50", "40", "250", "25", "10,15,20", "1000"])
def test_space_timesteps_matches_guided_diffusion(gd, spec):
    _, respace_mod, _ = gd
    assert space_timesteps(1000, spec) == sorted(respace_mod.space_timesteps(1000, spec))


def test_named_respacings_are_the_documented_steps():
    assert space_timesteps(1000, "ddim40") == list(range(0, 1000, 25))
    assert space_timesteps(1000, "40")[:5] == [0, 26, 51, 77, 102]
    assert space_timesteps(1000, "40")[-3:] == [948, 973, 999]


@pytest.mark.parametrize("spec", ["ddim40", "40", "250"])
def test_respaced_betas_match_spaced_diffusion(gd, spec):
    _, _, script_util = gd
    ref = script_util.create_gaussian_diffusion(steps=1000, learn_sigma=True, noise_schedule="linear",
                                                timestep_respacing=spec, rescale_learned_sigmas=True)
    ours = respace(make_schedule("linear"), spec)
    np.testing.assert_allclose(ours.betas.numpy(), ref.betas, rtol=1e-12, atol=TOL64)
    assert ours.timesteps.tolist() == list(ref.timestep_map)


def test_respaced_alpha_bar_is_a_subset_of_the_full_one():
    full = make_schedule("linear")
    spaced = respace(full, "ddim40")
    torch.testing.assert_close(spaced.alphas_cumprod, full.alphas_cumprod[spaced.timesteps], rtol=1e-12, atol=TOL64)


def test_snr_closed_forms():
    s = make_schedule("linear")
    torch.testing.assert_close(1 / (1 + s.snr), 1 - s.alphas_cumprod, rtol=1e-12, atol=TOL64)
    # P2 with k = 1 is (1 − ᾱ)^γ; the weights' table: γ=3 at t=500 ≈ 0.78, γ=50 at t=600 ≈ 0.27
    torch.testing.assert_close(p2(s.snr, 3.0), (1 - s.alphas_cumprod) ** 3, rtol=1e-10, atol=1e-15)
    assert abs(float(p2(s.snr, 3.0)[500]) - 0.78) < 0.01
    assert abs(float(p2(s.snr, 50.0)[600]) - 0.27) < 0.01
    assert float(p2(s.snr, 50.0)[400]) < 3e-5


def test_min_snr_weight_is_min_of_snr_and_gamma_over_snr():
    s = make_schedule("linear")
    w = min_snr(s.snr, 5.0)
    expected = torch.where(s.snr < 5.0, torch.ones_like(s.snr), 5.0 / s.snr)
    torch.testing.assert_close(w, expected, rtol=1e-12, atol=TOL64)
    assert str(MinSNR(5.0)) == "min-SNR-5"


def test_weighting_of_timesteps_gathers_per_sample():
    s = make_schedule("linear")
    t = torch.tensor([0, 500, 999])
    w = weights_at(P2(3.0), s, t)
    assert w.dtype == torch.float32 and w.shape == (3,)
    torch.testing.assert_close(w, ((1 - s.alphas_cumprod[t]) ** 3).float())
