"""EGSDE's domain-specific extractor: its trunk is the ADM encoder, it trains, it saves and loads.

Tolerances: the trunk-equals-encoder check is exact up to float32 reordering (1e-6); training must lower the
mean cross-entropy of the last 10 steps below 80 % of the first 10 on two easily separable synthetic domains.
"""
import numpy as np
import pytest
import torch
from PIL import Image

from sdft_lite.checkpoint import UnreadableCheckpointError
from sdft_lite.editing.dse import (DSETrainConfig, EncoderClassifier, dse_batch, load_dse, preset_for_size, save_dse,
                                   train_dse, train_dse_on_tensors)
from sdft_lite.unet import UNetConfig, UNetModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


MICRO = UNetConfig(image_size=16, num_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_resolutions="",
                   learn_sigma=True, use_scale_shift_norm=True, resblock_updown=True)


def randomise(model, seed=0):
    """Perturb every weight: ADM zero-inits the last conv of each residual branch, which would hide them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def two_domains(n=24, size=16, seed=0):
    """uint8 [n, 3, size, size] each: smooth dark 'photos' (source) and bright striped 'portraits' (target)."""
    g = torch.Generator().manual_seed(seed)
    source = (torch.rand(n, 3, 1, 1, generator=g) * 80 + torch.rand(n, 3, size, size, generator=g) * 20)
    stripes = (torch.arange(size) % 4 < 2).float().reshape(1, 1, 1, size) * 60
    target = (150 + torch.rand(n, 3, 1, 1, generator=g) * 40 + stripes).expand(n, 3, size, size)
    return source.clamp(0, 255).to(torch.uint8), target.clamp(0, 255).to(torch.uint8)


def test_trunk_is_the_adm_encoder():
    """Loaded with a U-Net's encoder weights, F(x, t) equals the U-Net's h-space (UNetModel.encode's h)."""
    torch.manual_seed(0)
    unet, dse = randomise(UNetModel(MICRO)).eval(), EncoderClassifier(MICRO).eval()
    trunk = {k: v for k, v in unet.state_dict().items() if k.split(".")[0] in ("time_embed", "input_blocks",
                                                                               "middle_block")}
    assert set(dse.state_dict()) == set(trunk) | {k for k in dse.state_dict() if k.startswith("out.")}
    dse.load_state_dict({**dse.state_dict(), **trunk})
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 700])
    with torch.no_grad():
        torch.testing.assert_close(dse.features(x, t), unet.encode(x, t)[0], rtol=0, atol=1e-6)
        assert dse(x, t).shape == (2, 2)


def test_trunk_matches_guided_diffusion_encoder_unet(gd):
    """EGSDE's DSE is guided-diffusion's EncoderUNetModel: same trunk keys and shapes, same middle-block output."""
    from guided_diffusion.nn import timestep_embedding as gd_timestep_embedding
    _, _, script_util = gd
    theirs = script_util.create_classifier(image_size=64, classifier_use_fp16=False, classifier_width=32,
                                           classifier_depth=1, classifier_attention_resolutions="8",
                                           classifier_use_scale_shift_norm=True, classifier_resblock_updown=True,
                                           classifier_pool="attention")
    randomise(theirs).eval()
    ours = EncoderClassifier(UNetConfig(image_size=64, num_channels=32, num_res_blocks=1, channel_mult="",
                                        attention_resolutions="8", num_head_channels=64, use_scale_shift_norm=True,
                                        resblock_updown=True)).eval()
    trunk = {k: v for k, v in theirs.state_dict().items() if not k.startswith("out.")}
    assert {k: v.shape for k, v in trunk.items()} == {k: v.shape for k, v in ours.state_dict().items()
                                                      if not k.startswith("out.")}
    ours.load_state_dict({**ours.state_dict(), **trunk})
    x, t = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)), torch.tensor([3, 900])
    with torch.no_grad():
        h, emb = x, theirs.time_embed(gd_timestep_embedding(t, 32))
        for block in theirs.input_blocks:
            h = block(h, emb)
        torch.testing.assert_close(ours.features(x, t), theirs.middle_block(h, emb), rtol=0, atol=1e-5)


def test_batches_are_class_balanced():
    source, target = two_domains(5)
    x, labels = dse_batch(source, target, 7, torch.Generator().manual_seed(0), "cpu")
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert x.shape == (7, 3, 16, 16) and -1 <= float(x.min()) and float(x.max()) <= 1


def test_training_lowers_the_loss():
    source, target = two_domains()
    losses = []
    train_dse_on_tensors(source, target, MICRO, DSETrainConfig(steps=40, batch=8, lr=1e-3),
                         callback=lambda step, loss: losses.append(loss))
    assert len(losses) == 40
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])


def test_folders_checkpoint_round_trip(tmp_path):
    source, target = two_domains(4)
    for name, domain in (("src", source), ("trg", target)):
        (tmp_path / name / "sub").mkdir(parents=True)
        for i, image in enumerate(domain):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / name / "sub" / f"{i}.png")
    model = train_dse(tmp_path / "src", tmp_path / "trg", MICRO, steps=2, batch=4)
    path = save_dse(model, tmp_path / "dse.pt", {"note": "test"})
    loaded = load_dse(path)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 500])
    with torch.no_grad():
        assert torch.equal(loaded(x, t), model(x, t))


def test_bare_encoder_state_dict_loads_without_its_head(tmp_path):
    """A guided-diffusion encoder file (EGSDE's face2portrait.pt) has its own head; only the trunk is loaded."""
    model = EncoderClassifier(MICRO)
    bare = {k: v for k, v in model.state_dict().items() if not k.startswith("out.")}
    bare["out.2.c_qkv_proj.weight"] = torch.zeros(3)  # an attention-pool head of another shape
    torch.save(bare, tmp_path / "bare.pt")
    loaded = load_dse(tmp_path / "bare.pt", config=MICRO)
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([50])
    with torch.no_grad():
        assert torch.equal(loaded.features(x, t), model.features(x, t))
    torch.save({k: v for k, v in bare.items() if not k.startswith("middle_block")}, tmp_path / "broken.pt")
    with pytest.raises(UnreadableCheckpointError, match="broken.pt .*does not fit the DSE trunk"):
        load_dse(tmp_path / "broken.pt", config=MICRO)


def test_presets_by_size():
    assert [preset_for_size(s) for s in (256, 64, 32)] == ["egsde256", "small64", "small32"]
    with pytest.raises(ValueError):
        preset_for_size(48)
