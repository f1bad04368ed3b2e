"""The trainer's mechanics, each against a hand computation: gradient accumulation, the EMA update, warm-up,
gradient clipping, and ``--resume`` refusing settings that would change the data or noise stream.

Tolerances: gradients of two micro-batches vs one double batch differ by < 1e-5 of the largest gradient (float32
sums in another order; measured 1e-6 or less); the EMA, warm-up and clipping identities hold to 1e-7 (float32)."""
import dataclasses

import pytest
import torch

from helpers import write_random_images
from sdft_lite.sdft import SDFTConfig, sdft_losses
from sdft_lite.train import ResumeMismatchError, TrainConfig, Trainer
from sdft_lite.unet import UNetConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_random_images(tmp_path_factory.mktemp("images"), 8)


def config(data_dir, tmp_path, **changes) -> TrainConfig:
    """Scratch mode, no dropout: every gradient is a pure function of the batch."""
    settings = dict(mode="scratch", data_dir=str(data_dir), out_dir=str(tmp_path), unet=UNetConfig.tiny(),
                    progress=False, save_every=0)
    return TrainConfig.tiny(**{**settings, **changes})


def gradients_of_one_step(trainer: Trainer) -> list[torch.Tensor]:
    """The gradients the optimiser sees in the trainer's next step."""
    seen = []
    step = trainer.optimizer.step

    def record(*args, **kwargs):
        seen.extend(p.grad.clone() for p in trainer.model.parameters())
        return step(*args, **kwargs)
    trainer.optimizer.step = record
    trainer.train_step()
    return seen


def test_two_accumulated_micro_batches_equal_one_double_batch(data_dir, tmp_path):
    trainer = Trainer(config(data_dir, tmp_path, batch_size=8, grad_accum=2), device="cpu")
    micro = [trainer._batch(0), trainer._batch(1)]
    x0, t, noise = (torch.cat(parts) for parts in zip(*micro))
    reference = Trainer(config(data_dir, tmp_path / "ref", batch_size=8), device="cpu")
    reference.model.load_state_dict(trainer.model.state_dict())
    loss = sdft_losses(reference.model, None, reference.schedule, x0, t, noise, SDFTConfig.naive())["loss"].mean()
    loss.backward()
    expected = [p.grad.clone() for p in reference.model.parameters()]
    got = gradients_of_one_step(trainer)
    scale = max(float(g.abs().max()) for g in expected)
    worst = max(float((a - b).abs().max()) for a, b in zip(got, expected)) / scale
    print(f"largest difference / largest gradient: {worst:.2e}")
    assert worst < 1e-5


def test_the_ema_is_a_lerp_of_the_weights(data_dir, tmp_path):
    trainer = Trainer(config(data_dir, tmp_path, ema_rate=0.9), device="cpu")
    trainer.train_step()
    ema_before = [p.clone() for p in trainer.ema.parameters()]
    trainer.train_step()
    for e_old, e_new, p in zip(ema_before, trainer.ema.parameters(), trainer.model.parameters()):
        torch.testing.assert_close(e_new, e_old + 0.1 * (p.detach() - e_old), rtol=0, atol=1e-7)


def test_warm_up_is_linear_then_constant(data_dir, tmp_path):
    trainer = Trainer(config(data_dir, tmp_path, lr=1e-3, warmup_steps=4), device="cpu")
    rates = []
    for _ in range(6):
        trainer.train_step()
        rates.append(trainer.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3], rel=1e-12)


def test_clipping_scales_the_gradient_to_the_threshold(data_dir, tmp_path):
    unclipped = gradients_of_one_step(Trainer(config(data_dir, tmp_path / "a"), device="cpu"))
    norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in unclipped])))
    clip = norm / 4
    clipped = gradients_of_one_step(Trainer(config(data_dir, tmp_path / "b", grad_clip=clip), device="cpu"))
    for a, b in zip(unclipped, clipped):
        torch.testing.assert_close(b, a * clip / (norm + 1e-6), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("change", [{"seed": 1}, {"batch_size": 2}, {"grad_accum": 2}, {"num_images": 4}])
def test_resume_refuses_settings_that_change_the_stream(data_dir, tmp_path, change):
    base = config(data_dir, tmp_path, steps=2, save_every=2)
    Trainer(base, device="cpu").run()
    changed = dataclasses.replace(base, steps=4, **change)
    with pytest.raises(ResumeMismatchError, match=f"{next(iter(change))}: stored"):
        Trainer(changed, device="cpu").run(resume=True)
    assert Trainer(dataclasses.replace(base, steps=4, lr=5e-4), device="cpu").run(resume=True)["step"] == 4
