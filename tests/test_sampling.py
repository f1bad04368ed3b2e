"""Samplers against guided-diffusion's GaussianDiffusion/SpacedDiffusion and diffusers' DDIMScheduler.

Tolerances: 1e-5 absolute after 40 DDIM steps against guided-diffusion (same fp32 arithmetic up to order);
1e-5 against diffusers' DDIM update, given the same ᾱ (diffusers builds its betas in float32, which alone
moves a 40-step sample by ~1e-3 at |x| ≈ 4; that difference is tested separately at float32 precision).
"""
import pytest
import torch

from sdft_lite.sampling import (ancestral_sample, ddim_invert, ddim_invert_step, ddim_sample, ddim_step,
                                partial_reverse)
from sdft_lite.schedule import make_schedule, respace
from tests.helpers import ToyEpsModel


@pytest.fixture
def spaced_ref(gd):
    _, _, script_util = gd
    return script_util.create_gaussian_diffusion(steps=1000, learn_sigma=True, noise_schedule="linear",
                                                 timestep_respacing="ddim40", rescale_learned_sigmas=True)


def x_T(n=4, seed=1):
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_ddim_rederived_eps_matches_guided_diffusion(spaced_ref, toy_model):
    s = respace(make_schedule(), "ddim40")
    ours = ddim_sample(toy_model, x_T(), s, eta=0.0, clip_denoised=True, rederive_eps=True)
    theirs = spaced_ref.ddim_sample_loop(toy_model, (4, 3, 8, 8), noise=x_T(), clip_denoised=True, eta=0.0)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_keeping_model_eps_differs_from_rederiving_when_clipping_bites(toy_model):
    s = respace(make_schedule(), "ddim40")
    kept = ddim_sample(toy_model, x_T(), s, clip_denoised=True, rederive_eps=False)
    rederived = ddim_sample(toy_model, x_T(), s, clip_denoised=True, rederive_eps=True)
    assert (kept - rederived).abs().max() > 1e-2
    unclipped = [ddim_sample(toy_model, x_T(), s, clip_denoised=False, rederive_eps=r) for r in (False, True)]
    torch.testing.assert_close(unclipped[0], unclipped[1], rtol=0, atol=1e-3)


def test_ddim_step_with_eta_matches_guided_diffusion(spaced_ref, toy_model):
    s = respace(make_schedule(), "ddim40")
    x, t = x_T(), torch.full((4,), 20)
    torch.manual_seed(5)
    theirs = spaced_ref.ddim_sample(toy_model, x, t, clip_denoised=True, eta=0.5)["sample"]
    torch.manual_seed(5)
    ours, _ = ddim_step(s, toy_model(x, s.timesteps[t]), x, t, eta=0.5, clip_denoised=True, rederive_eps=True)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_ddim_inversion_step_matches_guided_diffusion(spaced_ref, toy_model):
    s = respace(make_schedule(), "ddim40")
    x = x_T() * 0.5
    for k in (0, 7, 38):
        t = torch.full((4,), k)
        theirs = spaced_ref.ddim_reverse_sample(toy_model, x, t, clip_denoised=False)["sample"]
        ours = ddim_invert_step(s, toy_model(x, s.timesteps[t]), x, t)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_ancestral_sampling_matches_guided_diffusion(gd, toy_model):
    _, _, script_util = gd
    ref = script_util.create_gaussian_diffusion(steps=1000, learn_sigma=True, noise_schedule="linear",
                                                timestep_respacing="25", rescale_learned_sigmas=True)
    s = respace(make_schedule(), "25")
    torch.manual_seed(3)
    theirs = ref.p_sample_loop(toy_model, (4, 3, 8, 8), noise=x_T(), clip_denoised=True)
    torch.manual_seed(3)
    ours = ancestral_sample(toy_model, x_T(), s, clip_denoised=True)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("clip", [False, True])
def test_ddim_matches_diffusers_scheduler(toy_model, clip):
    """The DDIM update against diffusers' DDIMScheduler, both in float64 with the same ᾱ (diffusers builds its
    betas in float32, checked here to float32 precision). Tolerance 1e-10."""
    from diffusers import DDIMScheduler
    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                          clip_sample=clip, set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
    torch.testing.assert_close(sched.alphas_cumprod, make_schedule().alphas_cumprod.float(), rtol=1e-5, atol=0)
    sched.alphas_cumprod = make_schedule().alphas_cumprod   # float64: compare the update rule exactly
    sched.set_timesteps(40)
    s = respace(make_schedule(), "ddim40")
    assert sched.timesteps.tolist() == s.timesteps.flip(0).tolist()
    model = toy_model.double()
    x = x_T().double()
    ref = x.clone()
    for t in sched.timesteps:
        ref = sched.step(model(ref, t.repeat(4))[:, :3], t, ref, eta=0.0).prev_sample
    ours = ddim_sample(model, x, s, clip_denoised=clip, rederive_eps=False)
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)


def test_ddim_euler_view_in_sigma_space(toy_model):
    """DDIM (η=0) is Euler's method on x/√ᾱ in σ = √((1−ᾱ)/ᾱ): x̃_prev = x̃ + (σ_prev − σ) ε."""
    s = respace(make_schedule(), "ddim40")
    x = x_T()
    abar, abar_prev = s.alphas_cumprod.float(), s.alphas_cumprod_prev.float()
    k = 30
    t = torch.full((4,), k)
    eps = toy_model(x, s.timesteps[t])[:, :3]
    ours, _ = ddim_step(s, toy_model(x, s.timesteps[t]), x, t, clip_denoised=False)
    sigma = ((1 - abar[k]) / abar[k]).sqrt()
    sigma_prev = ((1 - abar_prev[k]) / abar_prev[k]).sqrt()
    euler = (x / abar[k].sqrt() + (sigma_prev - sigma) * eps) * abar_prev[k].sqrt()
    torch.testing.assert_close(ours, euler, rtol=0, atol=1e-5)


def test_inversion_then_sampling_reconstructs_better_with_more_steps():
    """With a smooth model, DDIM inversion followed by DDIM sampling returns the input, and the error falls
    as the number of steps grows (a consistent ODE discretisation)."""
    model = ToyEpsModel(learn_sigma=False)
    with torch.no_grad():
        model.mix.mul_(0.1)
    x0 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.6
    errors = []
    for steps in (10, 50, 250):
        s = respace(make_schedule(), f"ddim{steps}")
        stop = len(s) // 2   # invert to t = 500
        latent = ddim_invert(model, x0, s, stop=stop)
        back = ddim_sample(model, latent, s, start=stop, clip_denoised=False)
        errors.append(float((back - x0).abs().max()))
    # first-order convergence: 5x more steps cut the error at least ~3x (measured: 0.42, 0.08, 0.016)
    assert errors[1] < errors[0] / 3 and errors[2] < errors[1] / 3, errors


def test_partial_reverse_starts_from_noise_at_the_chosen_step(toy_model):
    s = respace(make_schedule(), "ddim40")
    seen = []
    g = torch.Generator().manual_seed(0)
    out = partial_reverse(toy_model, (2, 3, 8, 8), s, start_timestep=500, generator=g,
                          callback=lambda k, x, x0: seen.append(int(s.timesteps[k])))
    assert seen[0] == 500 and seen[-1] == 0 and out.shape == (2, 3, 8, 8)


def test_gaussian_draws_where_the_generator_lives():
    from sdft_lite.sampling import gaussian
    shape = (2, 3, 4, 4)
    expected = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    drawn = gaussian(shape, torch.Generator().manual_seed(5), torch.device("cpu"))
    assert torch.equal(drawn, expected)                    # a CPU generator: the same numbers on any device
    assert gaussian(shape, None, torch.device("cpu"), torch.float64).dtype == torch.float64
