"""The fused GroupNorm · scale-shift · SiLU kernels (``sdft_lite.fused_norm``) against what the U-Net runs now, op
by op, in one process (issue #20, item 3): for every normalisation of the FFHQ-256 U-Net's ResBlocks at the
training batch, forward + backward in bfloat16 channels-last, timed for

- ``eager``: the ResBlock's own ops (``GroupNorm32`` in float32, back to bf16, · (1 + s) + t, SiLU), in torch;
- ``inductor``: the same function under ``torch.compile`` (inductor's own fusion: what the compiled step has now);
- ``fused``: ``group_norm_silu`` (two Triton kernels).

Each is also compared with float64 (max |error| / (1 + |reference|) of y and dx on the largest shape), and the
totals are weighted by how often each shape occurs in one forward of the U-Net. Writes OUT/fused_norm.json.

    python3 bench/bench_fused_norm.py --out OUT/fused_norm                 # GPU
    python3 bench/bench_fused_norm.py --out /tmp/fused_norm --smoke        # the machinery on a CPU (interpreter)

Only a gain here is a reason to turn the kernels on (``TrainConfig.fused_norm``, ``unet.use_fused_norm``; the
whole step: bench_speed's ``fused_norm`` phase); bench_speed's ``profile`` is where the normalisation's share of
the step was measured.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_speed import timed  # noqa: E402  (bench/ is this script's folder)
from provenance import commit  # noqa: E402
from sdft_lite.config import hardware  # noqa: E402
from sdft_lite.unet import ResBlock, UNetConfig, UNetModel  # noqa: E402


def norm_shapes(unet: UNetConfig, batch: int) -> Counter:
    """{(B, C, H, W, with scale-shift): calls per U-Net forward} of the ResBlocks' two normalisations."""
    with torch.device("meta"):   # shapes only: no weights are allocated or run
        model = UNetModel(unet).eval()
    seen: Counter = Counter()

    def record(scale_shift: bool):
        return lambda module, inputs: seen.update([(*inputs[0].shape, scale_shift)])
    for block in (m for m in model.modules() if isinstance(m, ResBlock)):
        block.in_layers[0].register_forward_pre_hook(record(False))
        block.out_layers[0].register_forward_pre_hook(record(block.use_scale_shift_norm))
    with torch.no_grad():
        model(torch.zeros(batch, 3, unet.image_size, unet.image_size, device="meta"),
              torch.zeros(batch, dtype=torch.long, device="meta"))
    return seen


def as_resblock(x, weight, bias, scale, shift, groups: int = 32):
    """What ``unet.ResBlock`` computes: GroupNorm32 (float32 in, the input dtype out), scale-shift, SiLU."""
    h = torch.nn.functional.group_norm(x.float(), groups, weight, bias, 1e-5).to(x.dtype)
    if scale is not None:
        h = h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
    return torch.nn.functional.silu(h)


def inputs(shape: tuple, device: str, dtype=torch.bfloat16, seed: int = 0) -> list:
    """[x (channels-last), γ, β, scale, shift] as the U-Net holds them: activations in ``dtype``, γ, β float32;
    scale and shift None for a normalisation without them."""
    batch, channels, height, width, scale_shift = shape
    g = torch.Generator(device).manual_seed(seed)
    x = torch.randn(batch, channels, height, width, generator=g, device=device).to(dtype)
    weight = 1 + 0.1 * torch.randn(channels, generator=g, device=device)
    bias = 0.1 * torch.randn(channels, generator=g, device=device)
    scale = shift = None
    if scale_shift:
        scale, shift = (0.3 * torch.randn(2, batch, channels, generator=g, device=device)).to(dtype)
    leaves = [x.contiguous(memory_format=torch.channels_last), weight, bias, scale, shift]
    return [v.requires_grad_() if v is not None else None for v in leaves]


def forward_backward(fn, args: list, grad: torch.Tensor):
    leaves = [a for a in args if a is not None]
    y = fn(*args)
    return y, torch.autograd.grad(y, leaves, grad)


def errors(fn, shape: tuple, device: str) -> dict:
    """max |error| / (1 + |reference|) of y and dx against float64 on the same bf16-rounded inputs."""
    from sdft_lite.fused_norm import group_norm_silu_reference
    args = inputs(shape, device)
    grad = torch.randn_like(args[0])
    y, grads = forward_backward(fn, args, grad)
    exact = [a.detach().double().requires_grad_() if a is not None else None for a in args]
    y64, grads64 = forward_backward(lambda x, w, b, s, t: group_norm_silu_reference(x, w, b, 32, s, t), exact,
                                    grad.double())
    worst = lambda a, b: float(((a.detach().double() - b.detach()).abs() / (1 + b.detach().abs())).max())   # noqa: E731
    return {"y": worst(y, y64), "dx": worst(grads[0], grads64[0])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--shapes", type=int, default=0,
                        help="time only the N shapes with the most elements per forward (0: all 28)")
    parser.add_argument("--smoke", action="store_true", help="CPU, Triton's interpreter, the tiny U-Net, 1 iteration")
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"   # before the kernels are defined
    from sdft_lite.fused_norm import group_norm_silu
    device = "cpu" if args.smoke else "cuda"
    unet = UNetConfig.tiny() if args.smoke else UNetConfig.ffhq256()
    batch, iters, warmup = (2, 1, 0) if args.smoke else (args.batch, args.iters, 5)
    shapes = norm_shapes(unet, batch)
    if args.smoke:   # the interpreter is slow: three shapes show the machinery
        shapes = Counter(dict(sorted(shapes.items(), key=lambda item: item[0][1])[:3]))
    elements = {shape: calls * shape[0] * shape[1] * shape[2] * shape[3] for shape, calls in shapes.items()}
    if args.shapes:
        shapes = Counter({s: shapes[s] for s in sorted(shapes, key=elements.get, reverse=True)[:args.shapes]})
    covered = sum(elements[s] for s in shapes) / sum(elements.values())
    fused = lambda x, w, b, s, t: group_norm_silu(x, w, b, 32, s, t)   # noqa: E731
    ways = {"eager": as_resblock, "fused": fused}
    if not args.smoke:
        ways["inductor"] = torch.compile(as_resblock, dynamic=False)
    started = time.perf_counter()
    rows = []
    for shape, calls in sorted(shapes.items(), key=lambda item: -item[0][1] * item[0][2] * item[0][3]):
        torch._dynamo.reset()   # each shape compiles afresh: past dynamo's recompile limit it would run eagerly
        args_ = inputs(shape, device)
        grad = torch.randn_like(args_[0])
        row = {"shape": list(shape[:4]), "scale_shift": shape[4], "calls_per_forward": calls}
        for name, fn in ways.items():
            row[f"{name}_ms"] = round(1000 * timed(lambda: forward_backward(fn, args_, grad), warmup, iters, device), 4)
        rows.append(row)
        print(row, flush=True)
    largest = max(shapes, key=lambda s: s[1] * s[2] * s[3] * (1 + s[4]))
    result = {"what": "GroupNorm · scale-shift · SiLU, forward + backward, bf16 channels-last", "device": hardware(),
              "torch": torch.__version__, "commit": commit(), "command": " ".join(sys.argv),
              "unet": "tiny (smoke)" if args.smoke else "ffhq256", "batch": batch, "iters": iters, "shapes": rows,
              "share_of_normalised_elements_timed": round(covered, 4),
              "total_ms_per_forward_and_backward": {name: round(sum(r[f"{name}_ms"] * r["calls_per_forward"]
                                                                    for r in rows), 3) for name in ways},
              "errors_vs_float64_on_largest_shape": {"shape": list(largest),
                                                     **{name: errors(fn, largest, device)
                                                        for name, fn in ways.items()}}}
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fused_norm.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("device", "total_ms_per_forward_and_backward",
                                             "errors_vs_float64_on_largest_shape")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
