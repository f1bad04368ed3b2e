"""Diffusion maths against guided-diffusion's GaussianDiffusion (oracle).

Tolerance: 1e-6 absolute on fp32 tensors of order 1 (both sides gather float64 constants to float32 and
do the same arithmetic in a possibly different order); 1e-5 for the VB term in bits (a sum of logs).
"""
import pytest
import torch

from sdft_lite.diffusion import (p_mean_variance, predict_eps_from_x0, predict_x0_from_eps, q_posterior,
                                 q_sample, training_losses, vb_term)
from sdft_lite.schedule import make_schedule
from sdft_lite.weighting import P2

ATOL = 1e-6


@pytest.fixture
def ref(gd):
    gaussian_diffusion, _, _ = gd
    return gaussian_diffusion.GaussianDiffusion(
        betas=gaussian_diffusion.get_named_beta_schedule("linear", 1000),
        model_mean_type=gaussian_diffusion.ModelMeanType.EPSILON,
        model_var_type=gaussian_diffusion.ModelVarType.LEARNED_RANGE,
        loss_type=gaussian_diffusion.LossType.RESCALED_MSE)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(6, 3, 8, 8, generator=g)
    t = torch.tensor([0, 1, 10, 300, 700, 999])
    return x0, noise, t


def test_q_sample_and_inverse(ref, batch):
    x0, noise, t = batch
    s = make_schedule()
    x_t = q_sample(s, x0, t, noise)
    torch.testing.assert_close(x_t, ref.q_sample(x0, t, noise=noise), rtol=0, atol=ATOL)
    # x̂_0 from the true noise round-trips; ε from the true x_0 too (looser at t=999 where 1/√ᾱ ≈ 157)
    torch.testing.assert_close(predict_x0_from_eps(s, x_t, t, noise), x0, rtol=0, atol=1e-3)
    torch.testing.assert_close(predict_eps_from_x0(s, x_t, t, x0), noise, rtol=0, atol=1e-3)


def test_posterior_matches(ref, batch):
    x0, noise, t = batch
    s = make_schedule()
    x_t = q_sample(s, x0, t, noise)
    for ours, theirs in zip(q_posterior(s, x0, x_t, t), ref.q_posterior_mean_variance(x0, x_t, t)):
        torch.testing.assert_close(ours.expand_as(theirs), theirs, rtol=0, atol=ATOL)


@pytest.mark.parametrize("clip", [True, False])
def test_learned_range_mean_and_variance(ref, batch, toy_model, clip):
    x0, noise, t = batch
    s = make_schedule()
    x_t = q_sample(s, x0, t, noise)
    with torch.no_grad():
        ours = p_mean_variance(s, toy_model(x_t, t), x_t, t, clip_denoised=clip)
        theirs = ref.p_mean_variance(toy_model, x_t, t, clip_denoised=clip)
    torch.testing.assert_close(ours.mean, theirs["mean"], rtol=0, atol=ATOL)
    torch.testing.assert_close(ours.log_variance, theirs["log_variance"], rtol=0, atol=ATOL)
    torch.testing.assert_close(ours.pred_x0, theirs["pred_xstart"], rtol=0, atol=1e-4)


def test_vb_term_matches(ref, batch, toy_model):
    x0, noise, t = batch
    s = make_schedule()
    x_t = q_sample(s, x0, t, noise)
    with torch.no_grad():
        ours = vb_term(s, toy_model(x_t, t), x0, x_t, t)
        theirs = ref._vb_terms_bpd(toy_model, x0, x_t, t, clip_denoised=False)["output"]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    assert (ours[t > 0] >= 0).all()   # a KL is never negative


def test_training_losses_match_rescaled_mse(ref, batch, toy_model):
    x0, noise, t = batch
    s = make_schedule()
    ours = training_losses(toy_model, s, x0, t, noise)
    theirs = ref.training_losses(toy_model, x0, t, noise=noise)
    for key in ("mse", "vb", "loss"):
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-5, msg=key)


def test_vb_gradient_reaches_only_the_variance_channels(batch):
    x0, noise, t = batch
    s = make_schedule()
    out = torch.randn(6, 6, 8, 8, requires_grad=True)
    from sdft_lite.diffusion import diffusion_terms
    terms = diffusion_terms(s, out, x0, q_sample(s, x0, t, noise), t, noise)
    terms["vb"].sum().backward()
    assert out.grad[:, :3].abs().max() == 0 and out.grad[:, 3:].abs().max() > 0


def test_p2_weighted_mse_is_the_p2_formula(batch, toy_model):
    x0, noise, t = batch
    s = make_schedule()
    plain = training_losses(toy_model, s, x0, t, noise)["mse"]
    weighted = training_losses(toy_model, s, x0, t, noise, mse_weighting=P2(0.5, 1.0))["mse"]
    expected = plain / (1.0 + s.snr[t]).pow(0.5).float()
    torch.testing.assert_close(weighted, expected, rtol=1e-6, atol=1e-7)
