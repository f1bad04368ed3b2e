"""Checkpoint loading: guided-diffusion state dicts load strictly and reproduce guided-diffusion's outputs.

Oracle: guided-diffusion-sdk's `create_model`, with its zero-initialised layers re-drawn so that every weight matters.
Tolerance: max |ours - guided-diffusion| <= 1e-5 * max(1, max |guided-diffusion|) in fp32 (outputs here are O(1)).
"""
import dataclasses
import pickle

import pytest
import torch
from torch import nn

from helpers import randomise_zero_init
from sdft_lite import checkpoint as ckpt
from sdft_lite.checkpoint import (CheckpointMismatchError, MissingWeightsError, UnreadableCheckpointError, find_weights,
                                  infer_config, load_state_dict_file, load_unet, save_atomic)
from sdft_lite.unet import UNetConfig, UNetModel

RELATIVE_TOL = 1e-5


def guided_diffusion_model(config: UNetConfig, seed: int = 0) -> nn.Module:
    """guided-diffusion's U-Net for `config`, with every parameter random (zero-init convs and GN affines too)."""
    from guided_diffusion.script_util import create_model
    flags = config.to_flags()
    flags.pop("in_channels")
    torch.manual_seed(seed)
    return randomise_zero_init(create_model(**flags).eval(), seed)


def assert_same_outputs(ours: nn.Module, reference: nn.Module, x: torch.Tensor, t: torch.Tensor):
    with torch.no_grad():
        expected, got = reference(x, t), ours(x, t)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= RELATIVE_TOL * max(1.0, expected.abs().max().item())


REDUCED = UNetConfig(image_size=32, num_channels=32, num_res_blocks=1, channel_mult="1,2,2",
                     attention_resolutions="16,8")
VARIANTS = {
    "legacy-scaleshift-updown-sigma-headch": dict(learn_sigma=True, use_scale_shift_norm=True, resblock_updown=True,
                                                  num_head_channels=16),
    "new-order-plain-heads": dict(use_new_attention_order=True, num_heads=2, num_heads_upsample=4),
    "legacy-scaleshift-convresample-heads": dict(learn_sigma=True, use_scale_shift_norm=True, num_heads=4),
    "new-order-updown-2blocks-headch": dict(use_new_attention_order=True, resblock_updown=True, num_res_blocks=2,
                                            num_head_channels=32, attention_resolutions="32,8"),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_guided_diffusion_state_dict_loads_and_matches(variant, tmp_path):
    config = REDUCED.replace(**VARIANTS[variant])
    reference = guided_diffusion_model(config)
    torch.save(reference.state_dict(), tmp_path / "model.pt")
    ours = load_unet(tmp_path / "model.pt", config)
    torch.manual_seed(1)
    assert_same_outputs(ours, reference, torch.randn(3, 3, 32, 32), torch.tensor([0, 500, 999]))


def test_ffhq256_p2_format_loads_with_inferred_flags_and_matches(tmp_path):
    """The ffhq_p2.pt format: a bare fp32 state dict; flags inferred from it; one 256-px forward each."""
    reference = guided_diffusion_model(UNetConfig.ffhq256())
    torch.save(reference.state_dict(), tmp_path / "ffhq_p2.pt")
    ours = load_unet(tmp_path / "ffhq_p2.pt")
    assert dataclasses.replace(ours.config, num_heads=4) == UNetConfig.ffhq256()  # num_heads is unused at 64 ch/head
    torch.manual_seed(1)
    assert_same_outputs(ours, reference, torch.randn(1, 3, 256, 256), torch.tensor([731]))


@pytest.mark.parametrize("config", [
    UNetConfig.tiny().replace(num_head_channels=64),
    REDUCED.replace(resblock_updown=True, use_scale_shift_norm=True, num_head_channels=64, attention_resolutions="8"),
    REDUCED.replace(channel_mult="1", attention_resolutions="", num_res_blocks=2, learn_sigma=True),
], ids=["tiny", "reduced", "one-level"])
def test_infer_config_recovers_the_flags(config):
    inferred = infer_config(UNetModel(config).state_dict(), image_size=config.image_size)
    assert dataclasses.replace(inferred, num_heads=config.num_heads) == config


def test_trainer_checkpoint_uses_stored_config_and_picks_ema(tmp_path):
    config = UNetConfig.tiny()  # 32 channels per head: not inferable, so the stored config must be used
    model, ema = guided_diffusion_model(config, seed=0), guided_diffusion_model(config, seed=1)
    save_atomic({"model": model.state_dict(), "ema": ema.state_dict(), "unet_config": config.to_flags(), "step": 3},
                tmp_path / "last.pt")
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([50, 950])
    loaded = load_unet(tmp_path / "last.pt")
    assert loaded.config == config
    assert_same_outputs(loaded, model, x, t)
    assert_same_outputs(load_unet(tmp_path / "last.pt", which="ema"), ema, x, t)


def test_ddp_and_compile_prefixes_are_stripped(tmp_path):
    reference = guided_diffusion_model(UNetConfig.tiny())
    torch.save({"module." + k: v for k, v in reference.state_dict().items()}, tmp_path / "ddp.pt")
    torch.save({"_orig_mod.module." + k: v for k, v in reference.state_dict().items()}, tmp_path / "both.pt")
    assert list(load_state_dict_file(tmp_path / "ddp.pt")) == list(reference.state_dict())
    assert list(load_state_dict_file(tmp_path / "both.pt")) == list(reference.state_dict())
    assert_same_outputs(load_unet(tmp_path / "ddp.pt", UNetConfig.tiny()), reference,
                        torch.randn(1, 3, 32, 32), torch.tensor([10]))


def test_mismatch_raises_one_clear_error(tmp_path):
    written = UNetConfig.tiny().replace(learn_sigma=False, num_res_blocks=2)
    state_dict = UNetModel(written).state_dict()
    state_dict["extra.weight"] = torch.zeros(1)
    torch.save(state_dict, tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatchError) as info:
        load_unet(tmp_path / "other.pt", UNetConfig.tiny())
    error = info.value
    assert isinstance(error, RuntimeError)
    assert "extra.weight" in error.unexpected and "input_blocks.5.0.in_layers.2.weight" in error.unexpected
    assert ("out.2.weight", (6, 32, 3, 3), (3, 32, 3, 3)) in error.mis_shaped
    message = str(error)
    assert "other.pt" in message and "unexpected keys" in message and "mis-shaped keys" in message
    assert "learn_sigma" in error.hint and "num_res_blocks" in error.hint and "num_channels" not in error.hint


def test_missing_state_dict_is_named(tmp_path):
    torch.save({"step": torch.tensor(1), "opt": {"lr": 1e-4}}, tmp_path / "odd.pt")
    with pytest.raises(UnreadableCheckpointError, match="odd.pt.*top-level keys"):
        load_state_dict_file(tmp_path / "odd.pt")


def test_missing_file_gives_where_to_get_and_put(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_unet(tmp_path / "nope.pt")

    home = tmp_path / "home"
    monkeypatch.setenv("SDFT_LITE_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingWeightsError) as info:
        load_unet("ffhq_p2.pt")
    assert "jychoi118/P2-weighting" in info.value.where_to_get
    assert "models/ffhq_p2.pt" in info.value.where_to_put and str(home / "models" / "ffhq_p2.pt") in str(info.value)

    (home / "models").mkdir(parents=True)  # a stand-in file under $SDFT_LITE_HOME is found by name
    torch.save(UNetModel(UNetConfig.tiny()).state_dict(), home / "models" / "ffhq_p2.pt")
    assert find_weights("ffhq_p2.pt") == home / "models" / "ffhq_p2.pt"


def test_known_sha256_is_checked(tmp_path, monkeypatch):
    path = tmp_path / "ffhq_p2.pt"
    path.write_bytes(b"not the real file")
    entry = ckpt.KNOWN_WEIGHTS["ffhq_p2.pt"]
    monkeypatch.setitem(ckpt.KNOWN_WEIGHTS, "ffhq_p2.pt", dataclasses.replace(entry, sha256="0" * 64))
    with pytest.raises(ValueError, match="sha256"):
        find_weights(path)
    monkeypatch.setitem(ckpt.KNOWN_WEIGHTS, "ffhq_p2.pt", dataclasses.replace(entry, sha256=ckpt.sha256_of(path)))
    assert find_weights(path) == path


UNPICKLED = []


def _side_effect():
    UNPICKLED.append(True)


class SideEffect:
    def __reduce__(self):
        return _side_effect, ()


def test_arbitrary_pickles_are_refused(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}, "payload": SideEffect()}, tmp_path / "evil.pt")
    with pytest.raises(UnreadableCheckpointError, match=r"evil.pt .*pickled code .*weights_only=True"):
        load_state_dict_file(tmp_path / "evil.pt")
    assert not UNPICKLED


def test_save_atomic_replaces_whole_files_only(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"
    save_atomic({"w": torch.arange(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))
    with pytest.raises((pickle.PicklingError, AttributeError)):
        save_atomic({"w": torch.ones(2), "bad": lambda: None}, path)  # lambdas cannot be pickled
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]


def test_fp16_file_loads_into_fp32_trainable_parameters(tmp_path):
    reference = guided_diffusion_model(UNetConfig.tiny())
    torch.save({k: v.half() for k, v in reference.state_dict().items()}, tmp_path / "half.pt")
    model = load_unet(tmp_path / "half.pt", UNetConfig.tiny())
    assert all(p.dtype == torch.float32 and p.requires_grad and p.device.type == "cpu" for p in model.parameters())
    expected = {k: v.half().float() for k, v in reference.state_dict().items()}
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
