"""The importance-sampled auxiliary term (sdft.ImportanceAux): a fixed number m of pure-noise inputs per batch,
drawn with probability proportional to λ_aux·w_a(t) and reweighted, is an unbiased estimate of the exact term.

Tolerances: the Monte Carlo mean of 20,000 draws within 4 standard errors of the exact sum (a false alarm about
once in 16,000 runs, and the draws are seeded, so the test is deterministic); the sample variance within 5% of its
closed form (A²/m)·Var_p(g) (20,000 draws: relative sd of a variance estimate ≈ √(2/20000) ≈ 1%); the term through
sdft_losses against the written-out estimator: relative 1e-5 (float32). Trainer checks are bit-exact."""
import dataclasses
import json

import pytest
import torch

from helpers import tiny_unet, write_training_files
from sdft_lite.schedule import make_schedule
from sdft_lite.sdft import ImportanceAux, SDFTConfig, every_aux, sdft_losses
from sdft_lite.train import ConfigError, TrainConfig, Trainer
from sdft_lite.weighting import weights_at

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py
SCHEDULE = make_schedule("linear")
CONFIG = SDFTConfig.symmetric(3.0)


def batch_t(n: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 1000, (n,), generator=torch.Generator().manual_seed(seed))


def estimates(t: torch.Tensor, gaps: torch.Tensor, m: int, draws: int) -> torch.Tensor:
    """The estimator Σ_j a_{i_j}·scale_j·g_{i_j} for ``draws`` independent draws."""
    selector, generator = ImportanceAux(m), torch.Generator().manual_seed(1)
    weight = CONFIG.lambda_aux * weights_at(CONFIG.aux_weighting, SCHEDULE, t).double()
    out = torch.empty(draws, dtype=torch.float64)
    for k in range(draws):
        index, scale = selector(CONFIG, SCHEDULE, t, generator)
        out[k] = (weight[index] * scale.double() * gaps[index]).sum()
    return out


def test_the_estimate_is_unbiased_and_its_variance_is_the_closed_form():
    t = batch_t()
    gaps = torch.rand(32, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.5
    a = CONFIG.lambda_aux * weights_at(CONFIG.aux_weighting, SCHEDULE, t).double()
    exact, total = float((a * gaps).sum()), float(a.sum())
    for m in (1, 4):
        values = estimates(t, gaps, m, 20_000)
        standard_error = float(values.std()) / 20_000 ** 0.5
        assert abs(float(values.mean()) - exact) < 4 * standard_error
        p = a / total
        closed_form = total ** 2 / m * float((p * (gaps - (p * gaps).sum()) ** 2).sum())
        assert float(values.var()) == pytest.approx(closed_form, rel=0.05)


def test_the_shape_is_fixed_whatever_the_timesteps():
    selector, generator = ImportanceAux(4), torch.Generator().manual_seed(0)
    for t in (batch_t(32), torch.zeros(32, dtype=torch.long), torch.full((8,), 999), batch_t(3, seed=5)):
        index, scale = selector(CONFIG, SCHEDULE, t, generator)
        assert index.shape == scale.shape == (4,) and bool((index >= 0).all() and (index < len(t)).all())
    index, scale = selector(CONFIG, SCHEDULE, torch.zeros(32, dtype=torch.long), generator)
    assert torch.equal(scale, torch.zeros(4))       # every weight 0 (t = 0): the exact term is 0, and so is this
    assert every_aux(SDFTConfig.naive(), SCHEDULE, batch_t())[0].numel() == 0
    assert ImportanceAux(4)(SDFTConfig.naive(), SCHEDULE, batch_t())[0].numel() == 0
    with pytest.raises(ValueError):
        ImportanceAux(0)


def test_through_sdft_losses_the_aux_term_is_the_written_out_estimator():
    """Each drawn input contributes A·g_i/m to its own sample's aux term, where g_i is the exact run's gap."""
    student, teacher = tiny_unet(0).eval(), tiny_unet(1).eval()
    g = torch.Generator().manual_seed(3)
    t = torch.tensor([5, 300, 420, 600, 700, 800, 900, 999])
    x0, noise = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1, torch.randn(8, 3, 32, 32, generator=g)
    exact = sdft_losses(student, teacher, SCHEDULE, x0, t, noise, CONFIG)
    drawn = sdft_losses(student, teacher, SCHEDULE, x0, t, noise, CONFIG, select_aux=ImportanceAux(3),
                        generator=torch.Generator().manual_seed(4))
    a = CONFIG.lambda_aux * weights_at(CONFIG.aux_weighting, SCHEDULE, t).double()
    gap = exact["aux"].double() / a                                  # g_i, from the exact term a_i·g_i
    index, _ = ImportanceAux(3)(CONFIG, SCHEDULE, t, torch.Generator().manual_seed(4))
    expected = torch.zeros(8, dtype=torch.float64).index_add(0, index, a.sum() / 3 * gap[index])
    torch.testing.assert_close(drawn["aux"].double(), expected, rtol=1e-5, atol=1e-12)
    for name in ("mse", "vb", "distill"):     # the rest of the loss does not depend on which aux inputs ran
        torch.testing.assert_close(drawn[name], exact[name], rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_training_files(tmp_path_factory.mktemp("aux"))


def run_config(files, out, **changes) -> TrainConfig:
    settings = dict(mode="sdft", data_dir=str(files / "images"), out_dir=str(out), progress=False, save_every=2,
                    source_checkpoint=str(files / "source.pt"), lr=1e-3, loss=SDFTConfig.symmetric(3.0))
    return TrainConfig.tiny(**{**settings, **changes})


def test_a_run_with_drawn_aux_samples_trains_and_resumes_bit_identically(files, tmp_path):
    whole = run_config(files, tmp_path / "whole", steps=4, aux_samples=2)
    trainer = Trainer(whole, device="cpu")
    assert trainer.select_aux == ImportanceAux(2)
    trainer.run()
    first = dataclasses.replace(whole, out_dir=str(tmp_path / "split"), steps=2)
    Trainer(first, device="cpu").run()
    Trainer(dataclasses.replace(first, steps=4), device="cpu").run(resume=True)
    a, b = (torch.load(tmp_path / d / "ckpt_0000004.pt", weights_only=True) for d in ("whole", "split"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    logs = [[json.loads(line)["aux"] for line in (tmp_path / d / "log.jsonl").read_text().splitlines()]
            for d in ("whole", "split")]
    assert logs[0] == logs[1] and any(value > 0 for value in logs[0])


def test_drawn_aux_samples_are_a_config_choice_checked_up_front(files, tmp_path):
    with pytest.raises(ConfigError, match="aux_samples"):
        Trainer(run_config(files, tmp_path / "a", steps=1, aux_samples=2, aux_skip_below=1e-6), device="cpu")
    with pytest.raises(ConfigError, match="aux_samples"):
        Trainer(run_config(files, tmp_path / "b", steps=1, aux_samples=-1), device="cpu")
