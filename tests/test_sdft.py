"""The SDFT loss against an independent, written-out computation of the paper's Eq. 6.

Tolerance: 1e-6 absolute on per-sample terms of order 1 (same fp32 operations, different grouping).
"""
import torch

from sdft_lite.diffusion import training_losses
from sdft_lite.schedule import make_schedule
from sdft_lite.sdft import SDFTConfig, SkipLightAux, sdft_losses
from tests.helpers import ToyEpsModel

ATOL = 1e-6


def setup(seed=0, n=8):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(n, 3, 8, 8, generator=g)
    t = torch.randint(0, 1000, (n,), generator=g)
    t[:3] = torch.tensor([0, 450, 999])
    return make_schedule(), x0, noise, t


def reference_sdft(student, teacher, abar, x0, noise, t, lam_d, gamma_d, lam_a, gamma_a):
    """SDFT written from the paper's equations, with no sdft_lite helper."""
    a = abar[t].float().reshape(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    out = student(x_t, t)
    eps_trg = out[:, :3]
    mse = ((noise - eps_trg) ** 2).mean(dim=(1, 2, 3))
    snr = abar[t] / (1 - abar[t])
    w_d = (1.0 / (1.0 + snr)) ** gamma_d
    w_a = (1.0 / (1.0 + snr)) ** gamma_a
    with torch.no_grad():
        eps_src = teacher(x_t, t)[:, :3]
        eps_src_aux = teacher(noise, t)[:, :3]
    distill = lam_d * w_d.float() * ((eps_src - eps_trg) ** 2).mean(dim=(1, 2, 3))
    aux = lam_a * w_a.float() * ((eps_src_aux - student(noise, t)[:, :3]) ** 2).mean(dim=(1, 2, 3))
    return mse, distill, aux


def test_sdft_terms_equal_the_written_out_formula():
    s, x0, noise, t = setup()
    student, teacher = ToyEpsModel(seed=1), ToyEpsModel(seed=2)
    terms = sdft_losses(student, teacher, s, x0, t, noise, SDFTConfig(0.3, lambda_aux=0.7))
    mse, distill, aux = reference_sdft(student, teacher, s.alphas_cumprod, x0, noise, t, 0.3, 3.0, 0.7, 50.0)
    torch.testing.assert_close(terms["mse"], mse, rtol=0, atol=ATOL)
    torch.testing.assert_close(terms["distill"], distill, rtol=0, atol=ATOL)
    torch.testing.assert_close(terms["aux"], aux, rtol=0, atol=ATOL)
    naive = training_losses(student, s, x0, t, noise)
    torch.testing.assert_close(terms["vb"], naive["vb"], rtol=0, atol=ATOL)
    torch.testing.assert_close(terms["loss"], mse + naive["vb"] + distill + aux, rtol=0, atol=1e-5)
    assert terms["aux"][2] > 0 and terms["aux"][0] == 0   # w_a(999) ≈ 1, w_a(0) underflows to 0


def test_zero_lambdas_give_the_naive_loss_without_calling_the_teacher():
    s, x0, noise, t = setup()
    student = ToyEpsModel(seed=1)

    def teacher(x, t):
        raise AssertionError("the teacher must not run when λ_d = λ_aux = 0")

    terms = sdft_losses(student, teacher, s, x0, t, noise, SDFTConfig.naive())
    naive = training_losses(student, s, x0, t, noise)
    torch.testing.assert_close(terms["loss"], naive["loss"], rtol=0, atol=0)


def test_no_gradient_reaches_the_teacher_and_the_student_gets_one():
    s, x0, noise, t = setup()
    student, teacher = ToyEpsModel(seed=1), ToyEpsModel(seed=2)
    sdft_losses(student, teacher, s, x0, t, noise, SDFTConfig.metfaces())["loss"].mean().backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_distillation_gradient_pulls_the_student_towards_the_teacher():
    s, x0, noise, t = setup()
    student, teacher = ToyEpsModel(seed=1), ToyEpsModel(seed=2)
    config = SDFTConfig(lambda_distill=1.0, lambda_aux=1.0, aux_weighting=SDFTConfig().distill_weighting)
    opt = torch.optim.SGD(student.parameters(), lr=0.05)
    gaps = []
    for _ in range(30):
        terms = sdft_losses(student, teacher, s, x0, t, noise, config)
        gaps.append(float((terms["distill"] + terms["aux"]).mean().detach()))
        opt.zero_grad()
        (terms["distill"] + terms["aux"]).mean().backward()
        opt.step()
    assert gaps[-1] < 0.5 * gaps[0]


class Spy(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x, t):
        self.calls.append((x.detach().clone(), t.clone()))
        return self.inner(x, t)


def test_the_auxiliary_input_is_the_same_noise_at_the_same_t():
    s, x0, noise, t = setup()
    student, teacher = Spy(ToyEpsModel(seed=1)), Spy(ToyEpsModel(seed=2))
    sdft_losses(student, teacher, s, x0, t, noise, SDFTConfig.metfaces())
    for spy in (student, teacher):
        (inputs, steps), = spy.calls
        torch.testing.assert_close(inputs[8:], noise, rtol=0, atol=0)   # pure Gaussian noise, not x_t
        assert torch.equal(steps[8:], t) and torch.equal(steps[:8], t)


def test_skipping_negligible_auxiliary_samples_changes_the_loss_by_under_1e_6_relative():
    s, x0, noise, _ = setup(n=64)
    t = torch.randint(0, 1000, (64,), generator=torch.Generator().manual_seed(3))
    student, teacher = Spy(ToyEpsModel(seed=1)), ToyEpsModel(seed=2)
    exact = sdft_losses(student, teacher, s, x0, t, noise, SDFTConfig.metfaces())["loss"].mean()
    skip = SkipLightAux(threshold=1e-6, bucket=1)   # λ_aux·w_a(t) < 1e-6 ⇔ t < 393 on the linear schedule
    fast = sdft_losses(student, teacher, s, x0, t, noise, SDFTConfig.metfaces(), select_aux=skip)["loss"].mean()
    assert abs(float((fast - exact).detach())) / float(exact.detach()) < 1e-6
    skipped_batch = student.calls[-1][0].shape[0]
    skipped = 128 - skipped_batch
    assert 15 <= skipped <= 40   # ≈ 39% of 64 auxiliary samples (t < 393) are skipped


def test_bucketed_skipping_keeps_a_multiple_of_the_bucket_and_the_heaviest_samples():
    s, x0, noise, _ = setup(n=16)
    t = torch.arange(16) * 60 + 30          # 30, 90, ..., 930: t ≥ 393 for 10 of them
    student, teacher = Spy(ToyEpsModel(seed=1)), ToyEpsModel(seed=2)
    exact = sdft_losses(student, teacher, s, x0, t, noise, SDFTConfig.metfaces())["loss"]
    bucketed = sdft_losses(student, teacher, s, x0, t, noise, SDFTConfig.metfaces(),
                           select_aux=SkipLightAux(threshold=1e-6, bucket=4))
    inputs, steps = student.calls[-1]
    assert inputs.shape[0] == 16 + 12                        # 10 needed, rounded up to 12
    assert steps[16:].tolist() == t[-12:].tolist()           # the 12 largest t, in batch order
    torch.testing.assert_close(bucketed["loss"], exact, rtol=1e-6, atol=1e-9)
