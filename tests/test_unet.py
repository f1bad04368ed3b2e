"""ADM U-Net: guided-diffusion's layout (oracle: guided-diffusion-sdk), config flags, checkpointing, h-space split.

Tolerances: fp32 comparisons are max |a - b| <= 1e-5 on outputs of order 1 (checkpointing, channels_last);
encode/decode vs forward is exact; bf16 autocast vs fp32 is a loose 5% relative bound (bf16 has 8 mantissa bits).
"""
import pytest
import torch
from torch import nn

from helpers import randomise_zero_init
from sdft_lite.unet import UNetConfig, UNetModel, count_parameters, timestep_embedding

FP32_ATOL = 1e-5


def guided_diffusion_model(config: UNetConfig) -> nn.Module:
    """The oracle: guided-diffusion's create_model with the same flags."""
    from guided_diffusion.script_util import create_model
    flags = config.to_flags()
    assert flags.pop("in_channels") == 3  # create_model has RGB fixed
    return create_model(**flags)




@pytest.fixture(scope="module")
def ffhq_models():
    torch.manual_seed(0)
    return UNetModel(UNetConfig.ffhq256()).eval(), guided_diffusion_model(UNetConfig.ffhq256())


def test_ffhq256_state_dict_matches_guided_diffusion(ffhq_models):
    ours, reference = ffhq_models
    ours_sd, ref_sd = ours.state_dict(), reference.state_dict()
    assert list(ours_sd) == list(ref_sd)
    assert {k: v.shape for k, v in ours_sd.items()} == {k: v.shape for k, v in ref_sd.items()}
    assert len(ours_sd) == 362
    assert count_parameters(ours) == count_parameters(reference) == 93_563_910


def test_ffhq256_h_space_shape(ffhq_models):
    """Asyrp's h-space: the middle-block output, [B, 512, 8, 8] at 256 px (decode is checked on the tiny model)."""
    ours, _ = ffhq_models
    with torch.no_grad():
        h, skips, emb = ours.encode(torch.randn(1, 3, 256, 256), torch.tensor([500]))
    assert h.shape == (1, 512, 8, 8)
    assert len(skips) == len(ours.input_blocks) == 12 and emb.shape == (1, 512)


@pytest.mark.parametrize("preset", ["tiny", "small32", "small64"])
def test_presets_match_guided_diffusion_layout(preset):
    config = getattr(UNetConfig, preset)()
    ours_sd, ref_sd = UNetModel(config).state_dict(), guided_diffusion_model(config).state_dict()
    assert {k: v.shape for k, v in ours_sd.items()} == {k: v.shape for k, v in ref_sd.items()}


@pytest.mark.parametrize("preset", ["ffhq256", "tiny", "small32", "small64"])
def test_flags_round_trip(preset):
    config = getattr(UNetConfig, preset)()
    assert UNetConfig.from_flags(config.to_flags()) == config
    assert UNetConfig.from_flags({**config.to_flags(), "use_fp16": True}) == config


def test_config_parsing():
    assert UNetConfig(image_size=256).channel_mult == (1, 1, 2, 2, 4, 4)
    assert UNetConfig(image_size=64).channel_mult == (1, 2, 3, 4)
    assert UNetConfig(image_size=64, channel_mult="1, 2,2").channel_mult == (1, 2, 2)
    assert UNetConfig(image_size=64, channel_mult=(1, 2, 2)) == UNetConfig(image_size=64, channel_mult="1,2,2")
    assert UNetConfig(image_size=256, attention_resolutions="32,16,8").attention_downsample_factors == (8, 16, 32)
    assert UNetConfig.ffhq256().replace(dropout=0.1).dropout == 0.1
    with pytest.raises(ValueError, match="no default channel_mult"):
        UNetConfig(image_size=48)
    with pytest.raises(ValueError, match="attention resolution 4"):
        UNetConfig(image_size=32, channel_mult="1,2", attention_resolutions="4")
    with pytest.raises(TypeError, match="diffusion_steps"):
        UNetConfig.from_flags({"image_size": 32, "diffusion_steps": 1000})
    with pytest.raises(ValueError, match="class-conditional"):
        UNetConfig.from_flags({"image_size": 32, "class_cond": True})


def test_timestep_embedding_is_cos_then_sin_like_guided_diffusion():
    from guided_diffusion.nn import timestep_embedding as reference
    t = torch.tensor([0, 1, 250, 999])
    for dim in (128, 33):
        assert torch.allclose(timestep_embedding(t, dim), reference(t, dim), atol=1e-6)
    assert torch.equal(timestep_embedding(torch.tensor([0]), 8), torch.tensor([[1.0] * 4 + [0.0] * 4]))


def _loss_and_grads(model, x, t, seed):
    torch.manual_seed(seed)  # same dropout masks in both runs
    out = model(x, t)
    model.zero_grad()
    out.square().mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _saved_tensor_bytes(model, x, t) -> int:
    """Bytes that autograd keeps for the backward pass of one forward (the activation memory checkpointing saves)."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x, t)
    return total


def test_gradient_checkpointing_same_output_and_grads_less_memory():
    config = UNetConfig.tiny().replace(dropout=0.1)
    plain = randomise_zero_init(UNetModel(config)).train()
    checkpointed = UNetModel(config.replace(use_checkpoint=True)).train()
    checkpointed.load_state_dict(plain.state_dict())
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 900])
    out_plain, grads_plain = _loss_and_grads(plain, x, t, seed=1)
    out_ckpt, grads_ckpt = _loss_and_grads(checkpointed, x, t, seed=1)
    assert (out_plain - out_ckpt).abs().max() <= FP32_ATOL
    for name, grad in grads_plain.items():
        assert (grad - grads_ckpt[name]).abs().max() <= FP32_ATOL, name
    assert _saved_tensor_bytes(checkpointed, x, t) < 0.3 * _saved_tensor_bytes(plain, x, t)


def test_encode_decode_equals_forward_and_skips_are_reusable():
    model = randomise_zero_init(UNetModel(UNetConfig.tiny())).eval()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0, 999])
    with torch.no_grad():
        h, skips, emb = model.encode(x, t)
        first = model.decode(h, skips, emb, x.dtype)
        second = model.decode(h, skips, emb, x.dtype)  # Asyrp decodes twice from the same skips
        out = model(x, t)
    assert h.shape == (2, 64, 16, 16)  # tiny: 2 levels, 64 channels at the bottleneck
    assert torch.equal(first, out) and torch.equal(second, out)


def test_output_channels_and_scalar_timestep():
    config = UNetConfig.tiny().replace(learn_sigma=False)
    model = randomise_zero_init(UNetModel(config)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x, torch.tensor(7))
        batched = model(x, torch.tensor([7, 7]))
    assert out.shape == (2, 3, 32, 32) and torch.equal(out, batched)


def test_channels_last_and_bf16_autocast():
    model = randomise_zero_init(UNetModel(UNetConfig.tiny())).eval()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([100, 600])
    with torch.no_grad():
        reference = model(x, t)
        model_cl = model.to(memory_format=torch.channels_last)
        out_cl = model_cl(x.to(memory_format=torch.channels_last), t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = model_cl(x.to(memory_format=torch.channels_last), t)
    assert (out_cl - reference).abs().max() <= FP32_ATOL
    assert out_bf16.dtype == torch.bfloat16 and torch.isfinite(out_bf16).all()
    relative = (out_bf16.float() - reference).norm() / reference.norm()
    assert relative < 0.05


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (128, 64, 16, 16), (1, 5, 3, 7)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_cpu_upsample_is_interpolate_bit_for_bit(shape, memory_format):
    import torch.nn.functional as F

    from sdft_lite.unet import upsample_nearest2x
    x = torch.randn(shape).to(memory_format=memory_format).requires_grad_(True)
    ours, reference = upsample_nearest2x(x), F.interpolate(x, scale_factor=2, mode="nearest")
    assert torch.equal(ours, reference)
    weight = torch.randn_like(reference)
    (grad_ours,) = torch.autograd.grad(ours, x, weight)
    (grad_reference,) = torch.autograd.grad(reference, x, weight)
    assert torch.allclose(grad_ours, grad_reference, rtol=0, atol=1e-6)   # sums of 4 in another order


def test_compiled_upsample_is_a_broadcast_whose_gradient_is_a_sum_not_an_atomic_scatter():
    """Under torch.compile the upsample is a broadcast on every device (the graph dynamo captures holds neither
    F.interpolate nor the CPU's repeat_interleave): the same values, the gradient summed per 2x2 block (to 1e-6,
    sums of 4 in another order), and no ``index_put`` in inductor's code — which is what inductor writes for the
    gradient of ``F.interpolate`` (with atomics on a GPU), also checked here."""
    import torch.nn.functional as F
    from torch._inductor.utils import run_and_get_code

    from sdft_lite.unet import upsample_nearest2x
    x = torch.randn(2, 3, 5, 4, requires_grad=True)
    weight = torch.randn(2, 3, 10, 8)
    captured = []

    def record(gm, example_inputs):
        captured.extend(str(node.target) for node in gm.graph.nodes if node.op in ("call_function", "call_method"))
        return gm.forward
    torch._dynamo.reset()
    torch.compile(upsample_nearest2x, backend=record)(x)
    assert not any(name in target for target in captured for name in ("interpolate", "upsample", "repeat"))

    def gradient_code(fn):
        torch._dynamo.reset()

        def step():
            out = torch.compile(fn)(x)
            return out, torch.autograd.grad(out, x, weight)[0]
        result, code = run_and_get_code(step)
        return result, "\n".join(code)
    (out, grad), code = gradient_code(upsample_nearest2x)
    reference = F.interpolate(x, scale_factor=2, mode="nearest")
    assert torch.equal(out, reference)
    assert torch.allclose(grad, torch.autograd.grad(reference, x, weight)[0], rtol=0, atol=1e-6)
    assert "index_put" not in code
    assert "index_put" in gradient_code(lambda x: F.interpolate(x, scale_factor=2, mode="nearest"))[1]
    torch._dynamo.reset()
