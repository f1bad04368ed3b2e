"""SDFT training and DDIM sampling speed: sdft_lite against the straightforward reference, side by side.

Run on a GPU (not in CI):  python bench/bench_speed.py --out bench/results/speed_<device>.json

The reference is a plain SDFT step written on guided-diffusion's ``UNetModel`` (guided-diffusion-sdk) with the
FFHQ-P2 flags: student and (fp32) teacher forward on [x_t; ε] at 256 px, batch 16, AdamW — the way one would
write it on the authors' code base. sdft_lite runs its own Trainer step (bf16 autocast, channels_last, SDPA,
bf16 teacher, fused AdamW, auxiliary samples with λ_aux·w_a(t) < 1e-6 skipped). Both start from the same
weights. Each phase writes its numbers into the JSON as soon as it ends, so a time-out keeps what finished.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdft_lite.data import ImageSet  # noqa: E402
from sdft_lite.diffusion import mean_flat  # noqa: E402
from sdft_lite.sample import generate  # noqa: E402
from sdft_lite.schedule import make_schedule  # noqa: E402
from sdft_lite.train import TrainConfig, Trainer  # noqa: E402
from sdft_lite.unet import UNetConfig, UNetModel  # noqa: E402

PEAK_NOTE = "MFU = achieved / measured bf16 matmul peak (8192³, this run)"


WARMUP = 3


def timed(fn, warmup: int, iters: int) -> float:
    """Seconds per call of fn, after warm-up, with CUDA synchronised."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def matmul_peak() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    seconds = timed(lambda: a @ b, 3, 10)
    return 2 * 8192 ** 3 / seconds / 1e12


def forward_gflop(model: torch.nn.Module, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randn(1, 3, size, size, device="cuda")
    t = torch.tensor([500], device="cuda")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, t)
    return counter.get_total_flops() / 1e9


def gd_flags() -> dict:
    flags = UNetConfig.ffhq256().replace(dropout=0.1).to_flags()
    flags.pop("in_channels")
    return dict(flags, class_cond=False, use_fp16=False)


# ---- the straightforward reference step -----------------------------------------------------------
def make_reference_step(student, teacher, schedule, data, batch: int, mode: str, autocast_dtype):
    """A plain SDFT (or naive) step on guided-diffusion's UNet, written as one would at first."""
    from guided_diffusion import gaussian_diffusion as gdm
    diffusion = gdm.GaussianDiffusion(betas=gdm.get_named_beta_schedule("linear", 1000).copy(),
                                      model_mean_type=gdm.ModelMeanType.EPSILON,
                                      model_var_type=gdm.ModelVarType.LEARNED_RANGE,
                                      loss_type=gdm.LossType.RESCALED_MSE)
    optimizer = torch.optim.AdamW(student.parameters(), lr=2e-5)
    abar = schedule.alphas_cumprod.cuda()
    w_d_all = ((1 - abar) ** 3).float()
    w_a_all = ((1 - abar) ** 50).float()

    def step():
        x0 = data.batch(torch.randint(0, len(data), (batch,)), "cuda")
        t = torch.randint(0, 1000, (batch,), device="cuda")
        noise = torch.randn_like(x0)
        x_t = diffusion.q_sample(x0, t, noise=noise)
        with torch.autocast("cuda", dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            if mode == "sdft":
                out = student(torch.cat([x_t, noise]), torch.cat([t, t])).float()
                with torch.no_grad():
                    teacher_eps = teacher(torch.cat([x_t, noise]), torch.cat([t, t])).float()[:, :3]
            else:
                out = student(x_t, t).float()
        eps, v = out[:batch, :3], out[:batch, 3:]
        mse = mean_flat((noise - eps) ** 2)
        frozen = torch.cat([eps.detach(), v], dim=1)
        vb = diffusion._vb_terms_bpd(model=lambda *a, **k: frozen, x_start=x0, x_t=x_t, t=t,
                                     clip_denoised=False)["output"]
        loss = mse + vb
        if mode == "sdft":
            gap = mean_flat((teacher_eps - out[:, :3]) ** 2)
            loss = loss + 0.1 * w_d_all[t] * gap[:batch] + 0.1 * w_a_all[t] * gap[batch:]
        optimizer.zero_grad(set_to_none=True)
        loss.mean().backward()
        optimizer.step()
    return step


def reference_sampler(model, autocast_dtype):
    from guided_diffusion.script_util import create_gaussian_diffusion
    diffusion = create_gaussian_diffusion(steps=1000, learn_sigma=True, noise_schedule="linear",
                                          timestep_respacing="ddim40", rescale_learned_sigmas=True)

    def run(n):
        with torch.autocast("cuda", dtype=autocast_dtype), torch.no_grad():
            return diffusion.ddim_sample_loop(model, (n, 3, 256, 256), clip_denoised=True, eta=0.0)
    return run


def compile_phases(args, record, throughput, trainer, model, fe, gflop):
    """Eager against torch.compile (default mode) in one process: naive (one batch shape), SDFT with every
    auxiliary sample (one shape), SDFT with skipping (a few bucketed shapes), and DDIM-40 sampling.
    ``trainer(**overrides)`` makes sdft_lite's Trainer with the benchmark's settings."""
    wanted = set(args.compile_cases.split(","))
    model = model.cuda().eval()
    n = args.sample_batch
    for compiled in ((False, True) if "sampling" in wanted else ()):
        torch._dynamo.reset()
        net = torch.compile(model) if compiled else model
        t0 = time.perf_counter()
        generate(net, n, 256, "ddim40", device="cuda", batch_size=n, precision=torch.bfloat16)
        torch.cuda.synchronize()
        first_s = time.perf_counter() - t0
        seconds = timed(lambda: generate(net, n, 256, "ddim40", device="cuda", batch_size=n,
                                         precision=torch.bfloat16), 0, 1)
        record(f"sdft_lite_ddim40_bf16{'_compiled' if compiled else ''}", img_per_s=round(n / seconds, 2),
               seconds=round(seconds, 2), first_call_seconds=round(first_s, 1),
               tflops=round(n / seconds * 40 * gflop / 1000, 1), batch=n)
    cases = (("sdft", {}, fe["ours_sdft"]),
             ("naive", dict(mode="naive"), fe["naive"]),
             ("sdft_all_aux", dict(aux_skip_below=0.0), 8.0))
    for name, overrides, fwd_equiv in (case for case in cases if case[0] in wanted):
        for compiled in (False, True):
            torch._dynamo.reset()
            torch.cuda.empty_cache()
            t0 = time.perf_counter()
            run = trainer(compile=compiled, **overrides)
            for _ in range(args.warmup):   # compiles every batch shape the warm-up meets
                run.train_step()
            torch.cuda.synchronize()
            warm_s = time.perf_counter() - t0
            throughput(f"sdft_lite_{name}_bf16{'_compiled' if compiled else ''}", run.train_step, fwd_equiv,
                       warmup_seconds=round(warm_s, 1))
            del run


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--sample-batch", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd sdft_lite")
    parser.add_argument("--only-compile", action="store_true",
                        help="time only eager vs torch.compile'd sdft_lite (training and DDIM-40 sampling)")
    parser.add_argument("--compile-cases", default="sampling,sdft,naive,sdft_all_aux",
                        help="with --only-compile: which of sampling, sdft, naive, sdft_all_aux to time")
    parser.add_argument("--skip-reference-sampling", action="store_true")
    parser.add_argument("--curve-steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10, help="warm-up steps (cuDNN autotunes each batch shape)")
    args = parser.parse_args()
    global WARMUP
    WARMUP = args.warmup
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
               "python": platform.python_version(), "batch": args.batch, "image_size": 256,
               "model": "FFHQ-P2 ADM flags (93.56M params), dropout 0.1", "mfu_note": PEAK_NOTE, "phases": {}}

    def record(name, **values):
        results["phases"][name] = values
        out_path.write_text(json.dumps(results, indent=2))
        print(name, json.dumps(values), flush=True)

    results["bf16_matmul_peak_tflops"] = round(matmul_peak(), 1)
    from guided_diffusion.script_util import create_model
    torch.manual_seed(0)
    reference = create_model(**gd_flags()).cuda()
    for p in reference.parameters():   # random "pretrained" weights, no zero layers
        torch.nn.init.normal_(p, std=0.02) if p.ndim > 1 else None
    ours = UNetModel(UNetConfig.ffhq256().replace(dropout=0.1))
    ours.load_state_dict(reference.state_dict(), strict=True)
    gflop = forward_gflop(ours.cuda(), 256)
    results["gflop_per_forward"] = round(gflop, 1)
    peak = results["bf16_matmul_peak_tflops"]
    images = torch.randint(0, 256, (256, 3, 256, 256), dtype=torch.uint8)
    data = ImageSet(images, [Path(f"{i}.png") for i in range(256)])
    schedule = make_schedule()
    # forward-equivalents per image: fwd+bwd = 3 forwards; SDFT runs student and teacher on 2B (reference)
    kept = float(((0.1 * (1 - schedule.alphas_cumprod) ** 50) >= 1e-6).double().mean())
    fe = {"reference_sdft": 8.0, "naive": 3.0, "ours_sdft": 4.0 * (1 + kept)}
    results["aux_kept_fraction"] = round(kept, 3)

    def throughput(name, step, fwd_equiv, batch=args.batch, iters=args.iters, **extra):
        torch.cuda.reset_peak_memory_stats()
        seconds = timed(step, WARMUP, iters)
        ips = batch / seconds
        tflops = ips * fwd_equiv * gflop / 1000
        record(name, img_per_s=round(ips, 2), step_ms=round(seconds * 1000, 1), tflops=round(tflops, 1),
               mfu=round(tflops / peak, 3), peak_mem_gb=round(torch.cuda.max_memory_allocated() / 2**30, 2),
               forward_equivalents_per_image=round(fwd_equiv, 2), **extra)
        return ips

    src = Path("/tmp/bench_source.pt")

    def our_trainer(**overrides):
        settings = dict(source_checkpoint=str(src), out_dir="/tmp/bench_run", batch_size=args.batch,
                        precision="bf16", aux_skip_below=1e-6, progress=False, sample_every=0, save_every=0,
                        compile=False)   # the preset compiles on GPUs; the eager phases must not
        config = TrainConfig.metfaces(**{**settings, **overrides})
        return Trainer(config, device="cuda", data=data)

    if args.only_compile:
        torch.save(ours.cpu().state_dict(), src)
        del reference
        compile_phases(args, record, throughput, our_trainer, ours, fe, gflop)
        return
    teacher = copy.deepcopy(reference).eval().requires_grad_(False)
    ref_fp32 = throughput("reference_sdft_fp32_tf32",
                          make_reference_step(reference, teacher, schedule, data, args.batch, "sdft", None),
                          fe["reference_sdft"])
    throughput("reference_sdft_bf16", make_reference_step(reference, teacher, schedule, data, args.batch, "sdft",
                                                          torch.bfloat16), fe["reference_sdft"])
    ref_naive = throughput("reference_naive_fp32_tf32",
                           make_reference_step(reference, None, schedule, data, args.batch, "naive", None),
                           fe["naive"])
    del teacher
    torch.save(ours.cpu().state_dict(), src)
    reference.cpu()
    torch.cuda.empty_cache()

    trainer = our_trainer()
    our_sdft = throughput("sdft_lite_sdft_bf16", trainer.train_step, fe["ours_sdft"])
    del trainer
    trainer = our_trainer(mode="naive")
    our_naive = throughput("sdft_lite_naive_bf16", trainer.train_step, fe["naive"])
    del trainer
    results["speedup_sdft_vs_reference_fp32"] = round(our_sdft / ref_fp32, 2)
    results["sdft_over_naive_time_ratio"] = round(our_naive / our_sdft, 2)
    results["reference_sdft_over_naive_time_ratio"] = round(ref_naive / ref_fp32, 2)
    out_path.write_text(json.dumps(results, indent=2))
    torch.cuda.empty_cache()

    # the fast trainer and the plain one (fp32, no skip, no channels_last) see the same batches, t and ε:
    # their loss curves must agree up to bf16 rounding
    curves = {}
    for name, overrides in (("plain", dict(precision="fp32", aux_skip_below=0.0, channels_last=False)),
                            ("fast", {})):
        trainer = our_trainer(**overrides)
        curves[name] = [float(trainer.train_step()["loss"]) for _ in range(args.curve_steps)]
        del trainer
        torch.cuda.empty_cache()
    rel = [abs(a - b) / abs(a) for a, b in zip(curves["plain"], curves["fast"])]
    record("loss_curve_fast_vs_plain", steps=args.curve_steps, mean_relative_difference=round(sum(rel) / len(rel), 5),
           max_relative_difference=round(max(rel), 5), plain=[round(v, 5) for v in curves["plain"]],
           fast=[round(v, 5) for v in curves["fast"]])

    # memory: batch 4 with gradient checkpointing, bf16 (H100) and fp16 + grad scaler (what a T4 would run)
    for precision in ("bf16", "fp16"):
        torch.cuda.empty_cache()
        trainer = our_trainer(batch_size=4, precision=precision,
                              unet=UNetConfig.ffhq256().replace(dropout=0.1, use_checkpoint=True))
        throughput(f"sdft_lite_sdft_batch4_checkpointing_{precision}", trainer.train_step, fe["ours_sdft"],
                   batch=4, iters=5)
        del trainer

    # sampling: DDIM-40 at 256 px, batch 64
    model = ours.cuda().eval()
    n = args.sample_batch
    for dtype_name, dtype in (("bf16", torch.bfloat16), ("fp32_tf32", torch.float32)):
        seconds = timed(lambda: generate(model, n, 256, "ddim40", device="cuda", batch_size=n, precision=dtype), 1, 1)
        record(f"sdft_lite_ddim40_{dtype_name}", img_per_s=round(n / seconds, 2), seconds=round(seconds, 2),
               tflops=round(n / seconds * 40 * gflop / 1000, 1), batch=n)
    if not args.skip_reference_sampling:
        reference.cuda().eval()
        run = reference_sampler(reference, torch.bfloat16)
        seconds = timed(lambda: run(n), 0, 1)
        record("reference_ddim40_bf16", img_per_s=round(n / seconds, 2), seconds=round(seconds, 2), batch=n)
        results["sampling_speedup_bf16"] = round(results["phases"]["sdft_lite_ddim40_bf16"]["img_per_s"]
                                                 / results["phases"]["reference_ddim40_bf16"]["img_per_s"], 2)
    if args.compile:
        t0 = time.perf_counter()
        trainer = our_trainer(compile=True)
        for _ in range(args.warmup):   # every aux bucket shape once: static, then one dynamic graph
            trainer.train_step()
        compile_s = time.perf_counter() - t0
        ips = throughput("sdft_lite_sdft_bf16_compiled", trainer.train_step, fe["ours_sdft"],
                         compile_seconds=round(compile_s, 1))
        del trainer
        trainer = our_trainer(compile=True, mode="naive")
        trainer.train_step()
        throughput("sdft_lite_naive_bf16_compiled", trainer.train_step, fe["naive"])
        results["speedup_sdft_compiled_vs_reference_fp32"] = round(ips / ref_fp32, 2)
        del trainer
        torch.cuda.empty_cache()

    out_path.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "phases"}, indent=2))


if __name__ == "__main__":
    main()
