"""The 2-D toy of chapter 9: the exact mixture denoiser, the SDFT fixed point, a short training run that reaches
it, and mode counting. CPU only, a few seconds each.

Tolerances:
- closed forms in float64 (ε* against −√(1−ᾱ) ∇log q_t by autograd; the fixed point against a numerical
  minimisation): 1e-9 absolute; q_t integrates to 1 on a grid to 1e-3 (the grid's truncation and spacing);
- the ε-posterior against importance-sampled Monte Carlo (200k draws): 6 standard errors of the estimate;
- the gradient of the mean ``sdft_losses`` at the fixed point (60k samples at three timesteps, in 20 chunks whose
  spread gives the standard error): below 6 standard errors per coordinate (measured 1.4), while at the naive
  fixed point it exceeds 20 (measured 260);
- a 400-step training run of a 64-wide MLP at one timestep (t = 600, λ = 1, the exact source as teacher):
  median ‖ε_θ − ε*‖ at most 0.1 and at most a third of the median λ-effect ‖ε*_λ − ε*_0‖, and at least 95% of
  the probes closer to ε*_λ than to ε*_0 (measured: 0.06 and 0.09 against effects of 0.30 and 0.67, 100% closer;
  a trained network is not exact, and this is what 400 steps reach);
- DDIM on a point-mass target returns the point to 1e-9 (float64: x̂_0 is exact at every step).
"""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from sdft_lite.diffusion import q_sample
from sdft_lite.schedule import make_schedule
from sdft_lite.sdft import SDFTConfig, sdft_losses
from sdft_lite.experiments import toy2d

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCHEDULE = make_schedule("linear")
SOURCE = toy2d.Mixture.ring(modes=8, radius=8.0, std=0.4)


def symmetric(lam: float) -> SDFTConfig:
    """λ_d = λ_aux = lam with the paper's weightings."""
    return replace(SDFTConfig(), lambda_distill=lam, lambda_aux=lam)


def mixed_mixture() -> toy2d.Mixture:
    """Three components of different widths, one a point mass, unequal weights."""
    return toy2d.Mixture(torch.tensor([[1.0, 2.0], [-3.0, 0.5], [0.0, -2.0]], dtype=torch.float64),
                         torch.tensor([0.3, 0.0, 1.2], dtype=torch.float64),
                         torch.tensor([0.5, 0.2, 0.3], dtype=torch.float64))


def test_exact_eps_is_the_scaled_score():
    mixture = mixed_mixture()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    for timestep in (0, 10, 250, 600, 999):
        t = torch.full((64,), timestep)
        x_req = x.clone().requires_grad_(True)
        score, = torch.autograd.grad(toy2d.noised_log_prob(mixture, SCHEDULE, x_req, t).sum(), x_req)
        expected = -(1 - SCHEDULE.alphas_cumprod[timestep]).sqrt() * score
        torch.testing.assert_close(toy2d.exact_eps(mixture, SCHEDULE, x, t), expected, rtol=0, atol=1e-9)


def test_noised_density_integrates_to_one():
    mixture = toy2d.Mixture(mixed_mixture().means, torch.tensor([0.3, 0.2, 1.2], dtype=torch.float64),
                            mixed_mixture().weights)
    axis = torch.linspace(-12, 12, 601, dtype=torch.float64)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    x = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    cell = float(axis[1] - axis[0]) ** 2
    for timestep in (5, 500, 999):
        density = toy2d.noised_log_prob(mixture, SCHEDULE, x, torch.full((x.shape[0],), timestep)).exp()
        assert abs(float(density.sum()) * cell - 1.0) < 1e-3


def test_exact_eps_matches_monte_carlo():
    """E[ε | x_t] by self-normalised importance sampling: x_0 ~ p, weight N(x_t; √ᾱ x_0, (1−ᾱ) I)."""
    mixture = mixed_mixture()
    generator = torch.Generator().manual_seed(1)
    x0, _ = toy2d.sample_mixture(mixture, 200_000, generator)
    for timestep, x_t in ((400, [0.5, 1.0]), (700, [-1.0, -0.5]), (950, [0.3, 0.2])):
        abar = SCHEDULE.alphas_cumprod[timestep]
        x_t = torch.tensor([x_t], dtype=torch.float64)
        eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()                  # the ε that gives x_t from each x_0
        weights = torch.softmax(-(eps ** 2).sum(1) / 2, dim=0)
        estimate = (weights[:, None] * eps).sum(0)
        std_error = ((weights[:, None] ** 2) * (eps - estimate) ** 2).sum(0).sqrt()
        exact = toy2d.exact_eps(mixture, SCHEDULE, x_t, torch.tensor([timestep]))[0]
        assert torch.all((estimate - exact).abs() <= 6 * std_error), (timestep, estimate, exact, std_error)


def test_fixed_point_is_the_numerical_minimiser():
    """min over e of mean_i ‖ε_i − e‖² + a‖s − e‖² + b‖s − e‖², for given ε-values, by L-BFGS."""
    generator = torch.Generator().manual_seed(2)
    eps_values = torch.randn(50, 2, generator=generator, dtype=torch.float64) + torch.tensor([0.7, -0.2])
    source = torch.tensor([[-1.5, 2.0]], dtype=torch.float64)
    for a, b in ((0.0, 0.0), (0.1, 0.0), (0.1, 0.1), (3.0, 0.5), (0.0, 40.0)):
        e = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([e], lr=1.0, max_iter=100, tolerance_grad=1e-14, tolerance_change=1e-16)

        def objective():
            optimizer.zero_grad()
            loss = ((eps_values - e) ** 2).sum(1).mean() + (a + b) * ((source - e) ** 2).sum()
            loss.backward()
            return loss

        optimizer.step(objective)
        expected = toy2d.fixed_point(eps_values.mean(0, keepdim=True), source, a, b)
        torch.testing.assert_close(e.detach(), expected, rtol=0, atol=1e-9)
        assert toy2d.pull_fraction(a, b) == pytest.approx((a + b) / (1 + a + b))


def test_fixed_point_limits():
    target = SOURCE.subset([0, 1, 2])
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = torch.full((32,), 800)
    eps_src = toy2d.exact_eps(SOURCE, SCHEDULE, x, t)
    naive = toy2d.fixed_point_eps(target, eps_src, SCHEDULE, x, t, SDFTConfig.naive())
    torch.testing.assert_close(naive, toy2d.exact_eps(target, SCHEDULE, x, t), rtol=0, atol=1e-12)
    huge = toy2d.fixed_point_eps(target, eps_src, SCHEDULE, x, t, symmetric(1e12))
    torch.testing.assert_close(huge, eps_src, rtol=0, atol=1e-9)
    far = torch.tensor([[-60.0, 0.0]], dtype=torch.float64)   # φ/q_t overflows there: the aux term alone decides
    at_far = toy2d.fixed_point_eps(target, far, SCHEDULE, far, torch.tensor([600]), SDFTConfig())
    torch.testing.assert_close(at_far, far, rtol=0, atol=1e-12)


def test_sdft_loss_gradient_vanishes_at_the_fixed_point():
    """The mean of sdft_losses over many samples is stationary at ε* (and not at the naive ε*): a student
    ε*(x, t) + C [1, x] has zero expected gradient in C at C = 0 only if ε* is the loss's minimiser."""
    torch.manual_seed(4)
    points = toy2d.sample_mixture(SOURCE.subset([0, 1, 2]), 16, torch.Generator().manual_seed(4))[0].float()
    target = toy2d.Mixture.points(points)
    teacher = toy2d.exact_eps_model(SOURCE, SCHEDULE)
    config = symmetric(1.0)
    n = 60_000
    generator = torch.Generator().manual_seed(5)
    x0 = points[torch.randint(0, 16, (n,), generator=generator)]
    t = torch.tensor([500, 650, 800])[torch.randint(0, 3, (n,), generator=generator)]
    noise = torch.randn(n, 2, generator=generator)
    for loss_config_of_centre, must_vanish in ((config, True), (SDFTConfig.naive(), False)):
        centre = toy2d.fixed_point_model(target, teacher, SCHEDULE, loss_config_of_centre)
        shift = torch.zeros(2, 3, requires_grad=True)

        def student(x, timesteps):
            features = torch.cat([torch.ones_like(x[:, :1]), x], dim=1)
            return centre(x, timesteps) + features @ shift.T

        chunk_grads = []   # the mean gradient of 20 chunks of 10k samples: their spread gives the standard error
        for chunk in torch.arange(n).chunk(20):
            loss = sdft_losses(student, teacher, SCHEDULE, x0[chunk], t[chunk], noise[chunk], config)["loss"].mean()
            chunk_grads.append(torch.autograd.grad(loss, shift)[0].reshape(-1))
        chunk_grads = torch.stack(chunk_grads)
        ratio = (chunk_grads.mean(0).abs() / (chunk_grads.std(0) / math.sqrt(len(chunk_grads)))).max()
        assert (ratio < 6) if must_vanish else (ratio > 20), (must_vanish, ratio)


def test_core_works_on_points():
    """q_sample, sdft_losses and ddim_sample take [B, 2] points: DDIM with the exact ε of a point mass lands on
    the point, since x̂_0 is exact at every step."""
    point = toy2d.Mixture.points(torch.tensor([[3.0, -4.0]]))
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    out = toy2d.ddim_points(toy2d.exact_eps_model(point, SCHEDULE), x, SCHEDULE, steps=20)
    torch.testing.assert_close(out, torch.tensor([[3.0, -4.0]], dtype=torch.float64).expand(10, 2), rtol=0, atol=1e-9)
    x0, t, noise = torch.randn(6, 2), torch.tensor([0, 100, 300, 500, 800, 999]), torch.randn(6, 2)
    abar = SCHEDULE.alphas_cumprod[t].float()[:, None]
    torch.testing.assert_close(q_sample(SCHEDULE, x0, t, noise), abar.sqrt() * x0 + (1 - abar).sqrt() * noise)
    terms = sdft_losses(toy2d.exact_eps_model(SOURCE, SCHEDULE), toy2d.exact_eps_model(SOURCE, SCHEDULE),
                        SCHEDULE, x0, t, noise, SDFTConfig())
    assert all(value.shape == (6,) for value in terms.values())
    assert torch.all(terms["distill"] == 0) and torch.all(terms["aux"] == 0)   # student = teacher


def test_tiny_training_reaches_the_fixed_point():
    points = toy2d.sample_mixture(SOURCE.subset([0, 1, 2]), 8, torch.Generator().manual_seed(1))[0].float()
    teacher = toy2d.exact_eps_model(SOURCE, SCHEDULE)
    torch.manual_seed(0)
    init = toy2d.MLPDenoiser(toy2d.MLPConfig(width=64, depth=3), toy2d.data_std(SOURCE), SCHEDULE)
    config = symmetric(1.0)
    student = toy2d.finetune(init, points, SCHEDULE, config, steps=400, lr=3e-3, batch=128, teacher=teacher,
                             timesteps=torch.tensor([600]))
    probes = toy2d.probe_points(points, SCHEDULE, [600], n=256, seed=7)
    for row in toy2d.fixed_point_errors(student, teacher, toy2d.Mixture.points(points), SCHEDULE, config, probes):
        assert row["error"] <= min(0.1, row["effect"] / 3), row
        assert row["closer"] >= 0.95, row


def test_mode_counting_on_constructed_samples():
    means = SOURCE.means
    generator = torch.Generator().manual_seed(8)
    jitter = lambda n: 0.2 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    samples = torch.cat([means[0] + jitter(500), means[1] + jitter(300), means[5] + jitter(10),
                         torch.zeros(190, 2, dtype=torch.float64)])   # 19% at the centre, far from every mode
    shares = toy2d.mode_shares(samples, means, within=1.2)
    expected = torch.zeros(8, dtype=torch.float64)
    expected[[0, 1, 5]] = torch.tensor([0.5, 0.3, 0.01], dtype=torch.float64)
    torch.testing.assert_close(shares, expected, rtol=0, atol=1e-12)
    assert toy2d.surviving_modes(shares, 0.02).tolist() == [True, True] + [False] * 6
    assert float(toy2d.mode_shares(samples, means).sum()) == pytest.approx(1.0)   # no cap: all assigned


def test_figures_are_returned_and_leave_pyplot_alone():
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    backend, open_figures = matplotlib.get_backend(), plt.get_fignums()
    points = SOURCE.means[:3].float()
    ideal = toy2d.exact_eps_model(SOURCE, SCHEDULE)
    naive = toy2d.fixed_point_model(toy2d.Mixture.points(points), ideal, SCHEDULE, SDFTConfig.naive())
    samples = toy2d.ddim_points(ideal, toy2d.shared_noise(64).double(), SCHEDULE, steps=10)
    rows = [{"target_size": 3, "lr": 1e-3, "width": 8, "lambda": lam, "step": step, "budget": 1e-3 * step,
             "absent": 0.5 / (1 + step)} for lam in (0.0, 0.1) for step in (0, 10, 100)]
    figures = [toy2d.plot_samples({"source": samples}, SOURCE, points, within=1.2),
               toy2d.plot_fields({"source": ideal, "naive": naive}, SCHEDULE, 500, SOURCE, points, 1.2, steps=10,
                                 grid=11, arrows=5),
               toy2d.plot_pull(SCHEDULE, (0.1, 1.0), toy2d.mode_decision(SOURCE, SCHEDULE, n=50)),
               toy2d.plot_regime(rows)]
    assert all(isinstance(figure, Figure) for figure in figures)
    assert matplotlib.get_backend() == backend and plt.get_fignums() == open_figures
