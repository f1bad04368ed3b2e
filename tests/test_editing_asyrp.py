"""Asyrp's Δh editing and the edit directions (sdft_lite.editing.asyrp, .directions).

Tolerances: 1e-5 where two code paths compute the same float32 update in a different order; 1e-6 for the
direction formulas against hand computations (float64 inside); training must bring the last pass's mean loss
below 80 % of the first pass's on a tiny U-Net (observed: about 60 %).
"""
import math
import zlib

import numpy as np
import pytest
import torch

from sdft_lite.checkpoint import MissingWeightsError
from sdft_lite.editing.asyrp import (AsyrpConfig, DeltaBlock, asymmetric_step, asyrp_loss, asyrp_sample,
                                     asyrp_schedules, edit_images, eps_pair, invert, load_delta, save_delta,
                                     train_delta_block)
from sdft_lite.editing.directions import ClassifierDirection, ClipDirection, Direction
from sdft_lite.sampling import ddim_sample, ddim_step
from sdft_lite.schedule import make_schedule, respace
from sdft_lite.unet import UNetConfig, UNetModel


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


MICRO = UNetConfig(image_size=16, num_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_resolutions="",
                   learn_sigma=True, use_scale_shift_norm=True, resblock_updown=True)
STEPS10 = respace(make_schedule(), "10")  # timesteps 0, 111, ..., 888, 999
EXPRESSION = ("neutral", "smile", "open smile")


@pytest.fixture(scope="module")
def unet():
    """A micro U-Net with every weight randomised (ADM zero-inits its output convs)."""
    torch.manual_seed(0)
    model = UNetModel(MICRO).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def zero_delta(unet):
    delta = DeltaBlock.for_unet(unet)
    with torch.no_grad():
        delta.out_layers[-1].weight.zero_()
        delta.out_layers[-1].bias.zero_()
    return delta.eval()


def images(n=2, seed=0):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8


class PixelLogits(torch.nn.Module):
    """A stand-in attribute classifier: {"expression": fixed random linear logits of the pixels, [B, 3]}."""

    def __init__(self, classes=3, seed=1):
        super().__init__()
        self.weight = torch.randn(classes, 3 * 16 * 16, generator=torch.Generator().manual_seed(seed)) * 0.05

    def forward(self, x):
        return {"expression": x.flatten(1) @ self.weight.T}


# ---- the Δh module and the asymmetric process ---------------------------------------------------------------

def test_delta_block_layout(unet):
    delta = DeltaBlock.for_unet(unet)
    c, e = 64, 128  # bottleneck channels and embedding width of the micro U-Net
    assert (delta.channels, delta.emb_channels) == (c, e)
    shapes = {k: tuple(v.shape) for k, v in delta.state_dict().items()}
    assert shapes == {"in_layers.0.weight": (c,), "in_layers.0.bias": (c,), "in_layers.2.weight": (c, c, 1, 1),
                      "in_layers.2.bias": (c,), "emb_layers.1.weight": (c, e), "emb_layers.1.bias": (c,),
                      "out_layers.0.weight": (c,), "out_layers.0.bias": (c,), "out_layers.3.weight": (c, c, 1, 1),
                      "out_layers.3.bias": (c,)}
    h, emb = torch.randn(2, c, 8, 8), torch.randn(2, e)
    assert delta(h, emb).abs().max() > 0  # default init, not zero
    assert not torch.allclose(delta(h, emb), delta(h, emb + 1))  # the timestep embedding is added in
    assert torch.equal(zero_delta(unet)(h, emb), torch.zeros(2, c, 8, 8))


def test_eps_pair_runs_the_decoder_on_h_and_on_h_plus_delta(unet):
    x, t = images(), torch.tensor([700, 300])
    with torch.no_grad():
        eps, eps_edit = eps_pair(unet, zero_delta(unet), x, t)
        torch.testing.assert_close(eps, unet(x, t)[:, :3], rtol=0, atol=1e-6)
        assert torch.equal(eps, eps_edit)
        eps2, eps_edit2 = eps_pair(unet, DeltaBlock.for_unet(unet), x, t, scale=2.0)
        assert torch.equal(eps2, eps) and not torch.allclose(eps_edit2, eps)


def test_asymmetric_step_by_hand():
    x, eps, eps_edit = torch.randn(3, 2, 3, 16, 16).unbind(0)
    k = 6
    abar, abar_prev = STEPS10.alphas_cumprod[k].float(), STEPS10.alphas_cumprod[k - 1].float()
    p_t = (x - (1 - abar).sqrt() * eps_edit) / abar.sqrt()  # x̂_0 from the EDITED ε, not clipped
    expected = abar_prev.sqrt() * p_t + (1 - abar_prev).sqrt() * eps  # direction from the ORIGINAL ε
    ours, ours_p = asymmetric_step(STEPS10, eps, eps_edit, x, torch.full((2,), k))
    torch.testing.assert_close(ours_p, p_t, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


def test_zero_delta_is_plain_ddim(unet):
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    config = AsyrpConfig(t_edit=500, t_boost=0)
    ours = asyrp_sample(unet, zero_delta(unet), x_T, STEPS10, config)
    plain = ddim_sample(unet, x_T, STEPS10, eta=0.0, clip_denoised=False)
    torch.testing.assert_close(ours, plain, rtol=0, atol=1e-5)


def test_delta_acts_only_from_t_edit_up_and_boost_adds_noise_below_t_boost(unet):
    calls = []
    decode = unet.decode
    unet.decode = lambda *a, **k: calls.append(1) or decode(*a, **k)
    try:
        asyrp_sample(unet, DeltaBlock.for_unet(unet), torch.randn(1, 3, 16, 16), STEPS10, AsyrpConfig(t_edit=500))
    finally:
        del unet.decode
    assert len(calls) == 10 + 5  # one decode per step, a second at t = 555, 666, 777, 888, 999
    x_T, delta = torch.randn(1, 3, 16, 16), DeltaBlock.for_unet(unet)

    def run(t_boost, seed):
        return asyrp_sample(unet, delta, x_T, STEPS10, AsyrpConfig(t_boost=t_boost),
                            generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(0, 1), run(0, 2))  # no boosting: deterministic
    assert torch.equal(run(300, 1), run(300, 1)) and not torch.allclose(run(300, 1), run(300, 2))


def test_training_lowers_the_loss_and_names_the_direction(unet, tmp_path):
    direction = ClassifierDirection(PixelLogits(), "expression", 0, 1, class_names=EXPRESSION)
    config = AsyrpConfig(steps="10", inversion_steps="10", epochs=4, lr=0.1)
    inversion, editing = asyrp_schedules(config)
    x0 = images()
    torch.manual_seed(0)
    delta = DeltaBlock.for_unet(unet)
    frozen_before = [p.clone() for p in unet.parameters()]
    history = train_delta_block(unet, delta, x0, invert(unet, x0, inversion), direction, editing, config)
    assert len(history) == 4 * 2 * 5  # epochs x images x steps with t >= t_edit
    assert {r["direction"] for r in history} == {"classifier:expression neutral→smile"}
    assert [r["timestep"] for r in history[:5]] == [999, 888, 777, 666, 555]
    per_epoch = [np.mean([r["loss"] for r in history if r["epoch"] == e]) for e in range(4)]
    assert per_epoch[-1] < 0.8 * per_epoch[0]
    assert history[-1]["lr"] == pytest.approx(0.1 * 0.1)  # StepLR(3, 0.1) after three passes
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, unet.parameters()))  # the U-Net did not move
    assert all(p.requires_grad for p in unet.parameters())  # and its flags were restored

    path = save_delta(delta, tmp_path / "delta.pt", direction.name, config)
    loaded, name, loaded_config = load_delta(path)
    assert name == direction.name and loaded_config == config
    result = edit_images(unet, loaded, x0, name, config)
    assert result["direction"] == direction.name
    assert result["edited"].shape == result["original"].shape == x0.shape
    zero = edit_images(unet, zero_delta(unet), x0, name, config)
    torch.testing.assert_close(zero["edited"], zero["original"], rtol=0, atol=1e-5)


# ---- directions ---------------------------------------------------------------------------------------------

class StandInClip:
    """encode_text: a fixed random 6-d vector per string; encode_image: a fixed linear map of the mean colour."""

    def __init__(self):
        self.projection = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))

    def encode_text(self, texts):
        return torch.stack([torch.randn(6, generator=torch.Generator().manual_seed(zlib.crc32(t.encode())))
                            for t in texts])

    def encode_image(self, x):
        return x.mean(dim=(2, 3)) @ self.projection


def unit(v):
    return v / v.norm(dim=-1, keepdim=True)


def test_clip_direction_by_hand():
    clip, templates = StandInClip(), ("a photo of a {}.", "{}")
    direction = ClipDirection("face", "smiling face", clip, templates=templates)
    assert direction.name == "clip:face→smiling face"
    src = unit(clip.encode_text([t.format("face") for t in templates]).double())
    trg = unit(clip.encode_text([t.format("smiling face") for t in templates]).double())
    delta_t = unit((trg - src).mean(dim=0))
    x_src, x_edit = images(3, seed=1), images(3, seed=2)
    delta_i = unit(unit(clip.encode_image(x_edit).double()) - unit(clip.encode_image(x_src).double()))
    torch.testing.assert_close(direction.loss(x_src, x_edit).double(), 1 - delta_i @ delta_t, rtol=0, atol=1e-6)
    plain = unit(clip.encode_text(["face", "smiling face"]).double())
    assert direction.l1_factor == pytest.approx(float(plain[0] @ plain[1]), abs=1e-9)


def test_clip_direction_needs_encoders_with_gradients():
    with pytest.raises(MissingWeightsError, match="CLIP"):
        ClipDirection("face", "smiling face")

    class NoGrad(StandInClip):
        @torch.no_grad()
        def encode_image(self, x):
            return super().encode_image(x)
    direction = ClipDirection("face", "smiling face", NoGrad(), templates=("{}",))
    with pytest.raises(RuntimeError, match="differentiable"):
        direction.loss(images(), images(seed=1).requires_grad_(True))


def test_classifier_direction_by_hand():
    """Centred logits: src (1,2,3) → (−1,0,1), edit (2,1,3) → (0,−1,1); ΔI = n((1,−1,0))."""
    def classifier(x):
        return {"expression": x.flatten(1)}
    x_src, x_edit = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[2.0, 1.0, 3.0]])
    for src, trg, expected in ((1, 0, 0.0), (0, 1, 2.0), (0, 2, 1.5)):
        direction = ClassifierDirection(classifier, "expression", src, trg, class_names=EXPRESSION)
        torch.testing.assert_close(direction.loss(x_src, x_edit), torch.tensor([expected]), rtol=0, atol=1e-6)
    assert direction.name == "classifier:expression neutral→open smile"
    assert ClassifierDirection(classifier, "expression", 0, 1).name == "classifier:expression 0→1"
    torch.testing.assert_close(direction.similarity(x_src, x_edit), torch.tensor([-0.5]), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="at least 3"):
        ClassifierDirection(classifier, "style", 0, 1, class_names=("photo", "portrait"))
    with pytest.raises(ValueError, match="at least 3"):
        ClassifierDirection(classifier, "expression", 0, 1).loss(x_src[:, :2], x_edit[:, :2])


def test_asyrp_loss_by_hand():
    class Fixed(Direction):
        name, l1_factor = "fixed", 0.5

        def loss(self, x_src, x_edit):
            return torch.tensor([1.5, 0.5])
    p_edit, p_orig = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.2)
    terms = asyrp_loss(Fixed(), p_orig, p_edit, p_orig, AsyrpConfig(lambda_clip=1.0, lambda_l1=3.0))
    directional = (-math.log((2 - 1.5) / 2) - math.log((2 - 0.5) / 2)) / 2
    assert float(terms["directional"]) == pytest.approx(directional, abs=1e-6)
    assert float(terms["l1"]) == pytest.approx(0.2, abs=1e-6)
    assert float(terms["loss"]) == pytest.approx(directional + 3.0 * 0.5 * 0.2, abs=1e-6)


# ---- an edit interval closed from above, and a direction that sees every attribute --------------------------

def test_an_upper_bound_closes_the_edit_interval(unet):
    calls = []
    decode = unet.decode
    unet.decode = lambda *a, **k: calls.append(1) or decode(*a, **k)
    try:
        window = AsyrpConfig(t_edit=300, t_edit_upper=555)
        asyrp_sample(unet, DeltaBlock.for_unet(unet), torch.randn(1, 3, 16, 16), STEPS10, window)
    finally:
        del unet.decode
    assert len(calls) == 10 + 3  # a second decode at t = 333, 444, 555 only
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    plain = ddim_sample(unet, x_T, STEPS10, eta=0.0, clip_denoised=False)
    torch.testing.assert_close(asyrp_sample(unet, zero_delta(unet), x_T, STEPS10, AsyrpConfig(t_edit=300, t_edit_upper=555,
                                                                                               t_boost=0)),
                               plain, rtol=0, atol=1e-5)


def test_training_in_a_window_starts_from_the_plain_trajectory_and_trains_only_inside(unet):
    direction = ClassifierDirection(PixelLogits(), "expression", 0, 1, class_names=EXPRESSION)
    config = AsyrpConfig(steps="10", inversion_steps="10", epochs=1, lr=0.1, t_edit=300, t_edit_upper=555)
    inversion, editing = asyrp_schedules(config)
    x0 = images()
    latents = invert(unet, x0, inversion)
    seen = []
    delta = DeltaBlock.for_unet(unet)
    forward = delta.forward
    delta.forward = lambda h, emb: seen.append(h.detach().clone()) or forward(h, emb)
    history = train_delta_block(unet, delta, x0[:1], latents[:1], direction, editing, config)
    assert [r["timestep"] for r in history] == [555, 444, 333]
    # the first edited step sees h of the plain DDIM trajectory at t = 555
    x = latents[:1]
    for k in (9, 8, 7, 6):     # 999, 888, 777, 666
        t = torch.full((1,), k)
        x = ddim_step(editing, unet(x, editing.timesteps[t])[:, :3], x, t, clip_denoised=False)[0]
    h, _, _ = unet.encode(x, editing.timesteps[torch.full((1,), 5)])
    torch.testing.assert_close(seen[0], h, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="edit interval"):
        train_delta_block(unet, delta, x0, latents, direction, editing, AsyrpConfig(steps="10", t_edit=600,
                                                                                   t_edit_upper=650))


def test_a_direction_in_every_heads_logits_charges_for_side_effects():
    """E = (expression | skin) centred logits; ΔT = n(e_smile − e_neutral) in the expression block, 0 in skin."""
    def classifier(x):
        return {"skin": x[:, 3:], "expression": x[:, :3]}
    x_src = torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0, 0.0]])
    clean = torch.tensor([[0.0, 3.0, 3.0, 0.0, 0.0, 0.0]])       # expression moves straight along e_1 − e_0
    side = torch.tensor([[0.0, 3.0, 3.0, 2.0, 0.0, 0.0]])        # the same, and the skin logits move too
    one = ClassifierDirection(classifier, "expression", 0, 1, class_names=EXPRESSION)
    every = ClassifierDirection(classifier, "expression", 0, 1, class_names=EXPRESSION, all_heads=True)
    assert every.name == "classifier:expression neutral→smile (all heads)"

    def by_hand(src, edit, heads):
        def centred(v):   # sorted head names: expression (v[:3]), then skin (v[3:])
            blocks = [v[:3], v[3:]][:heads]
            return np.concatenate([block - block.mean() for block in blocks])
        e_src, e_edit = centred(src.double().numpy()[0]), centred(edit.double().numpy()[0])
        change = e_edit / np.linalg.norm(e_edit) - e_src / np.linalg.norm(e_src)
        target = np.zeros(len(e_src))
        target[1], target[0] = 1.0, -1.0
        return 1 - change @ target / (np.linalg.norm(change) * np.linalg.norm(target))
    for edit in (clean, side):
        torch.testing.assert_close(one.loss(x_src, edit).double(), torch.tensor([by_hand(x_src, edit, 1)],
                                   dtype=torch.float64), rtol=0, atol=1e-6)
        torch.testing.assert_close(every.loss(x_src, edit).double(), torch.tensor([by_hand(x_src, edit, 2)],
                                   dtype=torch.float64), rtol=0, atol=1e-6)
    # one head cannot see the skin change; every head charges for it
    assert float(one.loss(x_src, side)) == pytest.approx(float(one.loss(x_src, clean)), abs=1e-6)
    assert float(every.loss(x_src, side)) > float(every.loss(x_src, clean)) + 0.1
