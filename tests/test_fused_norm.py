"""The fused GroupNorm · scale-shift · SiLU kernels (``sdft_lite.fused_norm``) against the same function in float64
torch, forward and every gradient, on a CPU through Triton's interpreter (a subprocess: ``TRITON_INTERPRET`` must
be set before the kernels are defined).

Tolerances: float32 inputs, |error| ≤ 2e-5 · (1 + |reference|) — the kernels sum in float32 over at most a few
hundred elements per group, so their rounding error stays near 1e-6 (measured: ≤ 1.6e-6); a group with mean 1000
and sd 2, where float32 itself holds x only to ~3e-5, ≤ 2e-4 (measured: ≤ 1.1e-4); bfloat16 inputs
(the training dtype), output and dx are rounded to bfloat16 (relative step 2⁻⁸), so ≤ 1e-2 · (1 + |reference|)
against float64 on the same rounded inputs.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

CHECK = r'''
import json, torch
from sdft_lite.fused_norm import group_norm_silu, group_norm_silu_reference

def worst(dtype, fmt, scale_shift, B, C, H, W, G, offset=0.0):
    g = torch.Generator().manual_seed(B * 1000 + C * 10 + H)
    x = (torch.randn(B, C, H, W, generator=g) * 2 + offset).to(dtype).contiguous(memory_format=fmt)
    leaves = [x, torch.randn(C, generator=g), torch.randn(C, generator=g)]
    if scale_shift:
        leaves += [torch.randn(B, C, generator=g) * 0.5, torch.randn(B, C, generator=g)]
    leaves = [v.to(dtype).requires_grad_() for v in leaves]
    ss = leaves[3:] if scale_shift else [None, None]
    y = group_norm_silu(leaves[0], leaves[1], leaves[2], G, *ss)
    dy = torch.randn(y.shape, generator=g).to(dtype)
    grads = torch.autograd.grad(y, leaves, dy)
    exact = [v.detach().double().requires_grad_() for v in leaves]
    y64 = group_norm_silu_reference(exact[0], exact[1], exact[2], G, *(exact[3:] if scale_shift else [None, None]))
    grads64 = torch.autograd.grad(y64, exact, dy.double())
    def error(a, b):
        return float(((a.double() - b).abs() / (1 + b.abs())).max())
    names = ["y", "dx", "dweight", "dbias", "dscale", "dshift"]
    plain = [v.detach().requires_grad_() for v in leaves]   # torch's own path in the input dtype, for comparison
    y32 = group_norm_silu_reference(plain[0], plain[1], plain[2], G, *(plain[3:] if scale_shift else [None, None]))
    dx32 = torch.autograd.grad(y32, plain[0], dy)[0]
    return {"format": str(fmt), "layout_kept": y.is_contiguous(memory_format=fmt),
            **{n: error(a, b) for n, a, b in zip(names, [y, *grads], [y64, *grads64])},
            "torch_y": error(y32, y64), "torch_dx": error(dx32, grads64[0])}

cases = []
for fmt in (torch.contiguous_format, torch.channels_last):
    for scale_shift in (False, True):
        cases.append(dict(dtype="float32", **worst(torch.float32, fmt, scale_shift, 2, 8, 5, 3, 2)))
cases.append(dict(dtype="float32", shape="C/G = 3, H·W = 77", **worst(torch.float32, torch.channels_last, True,
                                                                       3, 12, 7, 11, 4)))
cases.append(dict(dtype="float32", shape="mean 1000 (cancellation)", **worst(torch.float32,
                                                                             torch.channels_last, True,
                                                                             2, 8, 6, 6, 2, offset=1000.0)))
cases.append(dict(dtype="bfloat16", **worst(torch.bfloat16, torch.channels_last, True, 2, 16, 8, 8, 4)))
print(json.dumps(cases))
'''


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_float32_forward_and_every_gradient_match_float64(cases):
    for case in (c for c in cases if c["dtype"] == "float32" and "cancellation" not in c.get("shape", "")):
        errors = {k: v for k, v in case.items() if k in ("y", "dx", "dweight", "dbias", "dscale", "dshift")}
        assert max(errors.values()) <= 2e-5, case


def test_bfloat16_matches_float64_to_its_rounding(cases):
    case = next(c for c in cases if c["dtype"] == "bfloat16")
    errors = {k: v for k, v in case.items() if k in ("y", "dx", "dweight", "dbias", "dscale", "dshift")}
    assert max(errors.values()) <= 1e-2, case


def test_the_output_keeps_the_input_memory_format(cases):
    assert all(case["layout_kept"] for case in cases)


def test_a_variance_far_below_the_squared_mean_is_not_lost_to_cancellation(cases):
    """Mean 1000, sd 2: float32 holds x only to half an ulp of 1000 (3.1e-5, 1.5e-5 of an sd), which γ(1 + s) and
    SiLU scale by a few, so ≤ 2e-4 against float64. E[x²] − E[x]² without the pivot is off by 5.6e-2 here (and so
    is torch's own float32 group norm on a CPU, 5.9e-2: measured when this test was written)."""
    case = next(c for c in cases if c.get("shape") == "mean 1000 (cancellation)")
    errors = {k: v for k, v in case.items() if k in ("y", "dx", "dweight", "dbias", "dscale", "dshift")}
    assert max(errors.values()) <= 2e-4, case


def test_the_op_benchmark_runs_on_a_cpu_and_records_both_paths(tmp_path):
    """bench/bench_fused_norm.py --smoke: the machinery the GPU run uses (timings on the interpreter mean nothing)."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "bench" / "bench_fused_norm.py"), "--out", str(tmp_path),
                           "--smoke"], capture_output=True, text=True, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "fused_norm.json").read_text())
    assert set(result["total_ms_per_forward_and_backward"]) == {"eager", "fused"} and len(result["shapes"]) == 3
    errors = result["errors_vs_float64_on_largest_shape"]
    assert errors["fused"]["y"] <= 1e-2 and errors["fused"]["dx"] <= 1e-2   # bf16 rounding, as above


UNET_CHECK = r'''
import copy, json, torch
from sdft_lite.unet import UNetConfig, UNetModel, use_fused_norm
torch.manual_seed(0)
plain = UNetModel(UNetConfig.tiny())
for p in plain.parameters():   # zero-initialised output convs would hide the second normalisation's gradient
    torch.nn.init.normal_(p, std=0.05)
fused = use_fused_norm(copy.deepcopy(plain))
x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 900])
outputs, grads = [], []
for model in (plain, fused):
    out = model(x, t)
    outputs.append(out.detach())
    grads.append(torch.autograd.grad(out.square().mean(), list(model.parameters())))
scale = max(float(g.abs().max()) for g in grads[0])
print(json.dumps({"out": float((outputs[0] - outputs[1]).abs().max()), "out_scale": float(outputs[0].abs().max()),
                  "grad": max(float((a - b).abs().max()) for a, b in zip(*grads)) / scale,
                  "fused_blocks": sum(getattr(m, "fused_norm", False) for m in fused.modules()),
                  "plain_blocks": sum(getattr(m, "fused_norm", False) for m in plain.modules())}))
'''


def test_a_unet_with_the_fused_kernels_computes_what_the_plain_one_does():
    """use_fused_norm swaps every ResBlock's normalisations for the kernels: the tiny U-Net's output and every
    parameter gradient agree with torch's ops in float32: output ≤ 1e-6 absolute (|out| ≤ 0.17), gradients ≤ 1e-5
    of the largest gradient — the kernels sum in another order (measured on the interpreter: 3.7e-8, 4.3e-8)."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", UNET_CHECK], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["fused_blocks"] > 0 and result["plain_blocks"] == 0
    assert result["out"] <= 1e-6 and result["grad"] <= 1e-5, result
