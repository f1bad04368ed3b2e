"""``sdft-lite translate``, ``sdft-lite edit`` and ``sdft-lite train-dse``.

translate: SDEdit / EGSDE (``--variant ddim``: the SDFT authors' DDIM-40 form; ``ancestral``: as published) or
DDIB on a folder of source-domain images, with a target-domain model. edit: train Asyrp's Δh for a text
(``--text "a smiling face"``, in SynthCLIP's space or OpenAI CLIP's) or a direction (``classifier:HEAD:SRC:TRG``
or ``clip:SRC TEXT:TRG TEXT``) and apply it. Both write ``grid*.png``, a JSON record
and ``pairs/input`` + ``pairs/output`` (same file names) for the evaluate command.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch


def add_parser(subparsers) -> None:
    translate = subparsers.add_parser(
        "translate", help="domain translation of an image folder: SDEdit, EGSDE or DDIB",
        description="Translate source-domain images with a target-domain model. The paper's setting: "
                    "--method egsde --variant ddim --steps ddim40 --t0 500 (MetFaces, Table 1).")
    translate.add_argument("--method", choices=["sdedit", "egsde", "ddib"], required=True)
    translate.add_argument("--model", required=True, help="target-domain model checkpoint")
    translate.add_argument("--source-model", help="source-domain model (DDIB's encoder)")
    translate.add_argument("--dse", help="domain-specific extractor (EGSDE), from `sdft-lite train-dse`")
    translate.add_argument("--input", required=True, help="folder of source images (searched recursively)")
    translate.add_argument("--out", required=True, help="output folder: pairs/, grid.png, translate.json")
    translate.add_argument("--t0", type=int, default=500, help="noise level to start from, an original timestep")
    translate.add_argument("--steps", default=None,
                           help="respacing (default: ddim40 for --variant ddim and DDIB, 1000 for ancestral)")
    translate.add_argument("--variant", choices=["ddim", "ancestral"], default="ddim",
                           help="ddim: deterministic, the SDFT authors' form; ancestral: SDEdit/EGSDE as published")
    translate.add_argument("--repeats", type=int, default=1, help="ancestral only: repeat the procedure K times")
    translate.add_argument("--lambda-s", type=float, default=500.0, help="EGSDE realism weight λs")
    translate.add_argument("--lambda-i", type=float, default=2.0, help="EGSDE faithfulness weight λi")
    translate.add_argument("--lowpass-resolution", type=int, default=8, help="EGSDE low-pass grid (8 = 256/32)")
    translate.add_argument("--rederive-eps", action="store_true",
                           help="DDIM: re-derive ε from the clipped x̂_0 (guided-diffusion, the authors' code)")
    _add_common(translate)
    translate.set_defaults(func=run_translate)

    edit = subparsers.add_parser(
        "edit", help="Asyrp editing: train Δh for a direction, then edit an image folder",
        description="Asyrp h-space editing, text-guided (--text 'a smiling face': SynthCLIP, the package's "
                    "SynthFaces image–text model, or --encoder clip with OpenAI CLIP weights on disk) or along a "
                    "direction: classifier:HEAD:SRC:TRG (levels by index or name, with --classifier) or "
                    "clip:SRC TEXT:TRG TEXT. On 32-px SynthFaces models use the smile window: --t-edit 200 "
                    "--t-edit-upper 500 --t-boost 100 (AsyrpConfig.synthfaces_smile).")
    edit.add_argument("--model", required=True, help="diffusion model checkpoint (kept frozen)")
    what = edit.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="text-guided: the target text, e.g. 'a smiling face' (from --source-text), "
                                     "in the space of --encoder")
    what.add_argument("--direction", help="classifier:expression:0:1 or 'clip:face:smiling face'")
    edit.add_argument("--source-text", default="a face", help="--text's starting point (the paper: 'face')")
    edit.add_argument("--encoder", choices=["synthclip", "clip"], default="synthclip",
                      help="--text's image–text model: the package's SynthCLIP (SynthFaces only) or OpenAI CLIP "
                           "(weights on disk, --clip-model)")
    edit.add_argument("--synthclip", help="a SynthCLIP file (default: the one the package ships)")
    edit.add_argument("--classifier", help="SynthFaces attribute classifier checkpoint (classifier directions)")
    edit.add_argument("--all-heads", action="store_true",
                      help="a classifier direction in every head's logits (the edit only in its own head): "
                           "changing another attribute then costs loss")
    edit.add_argument("--clip-model", default="ViT-B/32", help="OpenAI CLIP model for clip directions")
    edit.add_argument("--input", required=True, help="images to edit (searched recursively)")
    edit.add_argument("--train-input", help="images Δh trains on (default: --input)")
    edit.add_argument("--n-train", type=int, default=100, help="number of training images (Asyrp: 100)")
    edit.add_argument("--delta", help="a trained Δh checkpoint: skip training")
    edit.add_argument("--out", required=True, help="output folder")
    from ..editing.asyrp import AsyrpConfig
    defaults = AsyrpConfig()
    edit.add_argument("--t-edit", type=int, default=defaults.t_edit, help="Δh acts at t >= this")
    edit.add_argument("--t-edit-upper", type=int, default=defaults.t_edit_upper,
                      help="... and at t <= this (999: no upper bound, Asyrp's interval)")
    edit.add_argument("--t-boost", type=int, default=defaults.t_boost)
    edit.add_argument("--scale", type=float, default=defaults.scale, help="Δh scale c at inference")
    edit.add_argument("--steps", default=defaults.steps, help="respacing for training and editing")
    edit.add_argument("--inversion-steps", default=defaults.inversion_steps)
    edit.add_argument("--epochs", type=int, default=defaults.epochs)
    edit.add_argument("--lr", type=float, default=defaults.lr)
    edit.add_argument("--train-batch", type=int, default=defaults.batch, help="Δh training batch (Asyrp: 1)")
    _add_common(edit)
    edit.set_defaults(func=run_edit)

    dse = subparsers.add_parser("train-dse", help="train EGSDE's domain-specific extractor (source vs target)")
    dse.add_argument("source_dir")
    dse.add_argument("target_dir")
    dse.add_argument("--out", required=True, help="checkpoint path to write")
    dse.add_argument("--size", type=int, default=256)
    dse.add_argument("--preset", default="auto", choices=["auto", "egsde256", "small64", "small32", "tiny"],
                     help="trunk architecture (auto: by --size)")
    dse.add_argument("--steps", type=int, default=5000)
    dse.add_argument("--batch", type=int, default=32)
    dse.add_argument("--lr", type=float, default=3e-4)
    dse.add_argument("--limit", type=int, default=None, help="use at most this many images per folder")
    dse.add_argument("--seed", type=int, default=0)
    dse.add_argument("--device", default=None)
    dse.set_defaults(func=run_train_dse)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=None, help="process at most N input images")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="image i's noise is seeded by (seed, i)")
    parser.add_argument("--weights", choices=["raw", "ema"], default="raw", help="raw or EMA weights")
    parser.add_argument("--device", default=None)


# ---------------------------------------------------------------------------------------------------------------
# translate


def _load_model(path: str, weights: str, device: torch.device):
    from ..checkpoint import load_unet
    return load_unet(path, which="model" if weights == "raw" else "ema").to(device)


def translate_batch(args, model, source_model, dse, schedule, x0: torch.Tensor, first: int) -> torch.Tensor:
    """One batch of the chosen method; image i's perturbation noise is seeded by (seed, i)."""
    from ..sample import initial_noise
    from ..editing.ddib import ddib_translate
    from ..editing.egsde import EGSDEConfig, egsde_ancestral, egsde_ddim
    from ..editing.lowpass import LowPass
    from ..editing.sdedit import sdedit_ancestral, sdedit_ddim

    if args.method == "ddib":
        return ddib_translate(source_model, model, x0, schedule)
    noise = initial_noise(range(first, first + len(x0)), x0.shape[1], x0.shape[-1], args.seed).to(x0.device)
    generator = torch.Generator(x0.device).manual_seed(args.seed * 1_000_003 + first)
    config = EGSDEConfig(args.lambda_s, args.lambda_i, LowPass(args.lowpass_resolution))
    if args.method == "sdedit" and args.variant == "ddim":
        return sdedit_ddim(model, x0, schedule, args.t0, noise, rederive_eps=args.rederive_eps)
    if args.method == "sdedit":
        return sdedit_ancestral(model, x0, schedule, args.t0, args.repeats, noise, generator)
    if args.variant == "ddim":
        return egsde_ddim(model, dse, x0, schedule, args.t0, config, noise, rederive_eps=args.rederive_eps)
    return egsde_ancestral(model, dse, x0, schedule, args.t0, config, args.repeats, noise, generator)


def run_translate(args: argparse.Namespace) -> int:
    from ..config import pick_device
    from ..data import load_image_folder
    from ..schedule import make_schedule, respace
    from ..editing.dse import load_dse
    from ..editing.outputs import pair_names, save_pairs_folder, save_rows_grid

    if args.method == "ddib" and not args.source_model:
        raise SystemExit("translate --method ddib needs --source-model (the encoder)")
    if args.method == "egsde" and args.lambda_s != 0 and not args.dse:
        raise SystemExit("translate --method egsde needs --dse (train one with `sdft-lite train-dse`) or --lambda-s 0")
    device = pick_device(args.device)
    model = _load_model(args.model, args.weights, device)
    source_model = _load_model(args.source_model, args.weights, device) if args.source_model else None
    dse = load_dse(args.dse).to(device) if args.dse and args.method == "egsde" else None
    steps = args.steps or ("1000" if args.variant == "ancestral" and args.method != "ddib" else "ddim40")
    schedule = respace(make_schedule(), steps)
    data = load_image_folder(args.input, model.config.image_size, args.n)
    variant = "ode" if args.method == "ddib" else args.variant
    label = f"{args.method}/{variant}"
    print(f"translate [{label}] {len(data)} images from {args.input} with {args.model} "
          f"(t0={args.t0}, steps={steps}) on {device}")
    started, outputs = time.perf_counter(), []
    for first in range(0, len(data), args.batch):
        index = torch.arange(first, min(first + args.batch, len(data)))
        x0 = data.batch(index, device)
        outputs.append(translate_batch(args, model, source_model, dse, schedule, x0, first).detach().cpu())
    seconds = time.perf_counter() - started
    inputs, outputs = data.batch(torch.arange(len(data))), torch.cat(outputs).clamp(-1, 1)
    out = Path(args.out)
    pairs = save_pairs_folder(inputs, outputs, out, pair_names(data.files))
    save_rows_grid([inputs, outputs], out / "grid.png")
    info = {"method": args.method, "variant": variant, "model": args.model, "source_model": args.source_model,
            "dse": args.dse, "t0": None if args.method == "ddib" else args.t0, "steps": steps,
            "repeats": args.repeats, "lambda_s": args.lambda_s, "lambda_i": args.lambda_i,
            "lowpass_resolution": args.lowpass_resolution, "seed": args.seed, "weights": args.weights,
            "n": len(data), "seconds": round(seconds, 2), "pairs": str(pairs)}
    (out / "translate.json").write_text(json.dumps(info, indent=2))
    print(f"translate [{label}] wrote {len(data)} pairs to {pairs} and {out / 'grid.png'} in {seconds:.1f} s")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# edit


def parse_direction(spec: str, classifier_path: str | None, clip_model: str, device: torch.device,
                    all_heads: bool = False):
    """'classifier:HEAD:SRC:TRG' or 'clip:SRC TEXT:TRG TEXT' → a Direction (``all_heads``: classifier only)."""
    from ..editing.directions import ClassifierDirection, ClipDirection, DifferentiableClip

    kind, _, rest = spec.partition(":")
    parts = rest.split(":")
    if kind == "classifier" and len(parts) == 3:
        if not classifier_path:
            raise SystemExit("a classifier direction needs --classifier PATH (a SynthFaces attribute classifier)")
        from ..synthfaces.attributes import ATTRIBUTES
        from ..synthfaces.classifier import load_classifier
        head, src, trg = parts
        levels = ATTRIBUTES.get(head)
        if levels is None:
            raise SystemExit(f"unknown classifier head {head!r}; heads: {', '.join(ATTRIBUTES)}")

        def level(value: str) -> int:
            return int(value) if value.isdigit() else levels.index(value)
        classifier = load_classifier(classifier_path, device).requires_grad_(False)
        return ClassifierDirection(classifier, head, level(src), level(trg), class_names=levels, all_heads=all_heads)
    if kind == "clip" and len(parts) == 2:
        from ..metrics.clip_direction import ClipEncoders
        return ClipDirection(parts[0], parts[1], DifferentiableClip(ClipEncoders.from_file(clip_model, device=device)))
    raise SystemExit(f"cannot read direction {spec!r}; use classifier:HEAD:SRC:TRG or 'clip:SRC TEXT:TRG TEXT'")


def text_direction(args: argparse.Namespace, device: torch.device):
    """--source-text → --text in SynthCLIP's space (its own templates; unknown words named) or OpenAI CLIP's."""
    from ..editing.directions import ClipDirection, DifferentiableClip

    if args.encoder == "clip":
        from ..metrics.clip_direction import ClipEncoders
        return ClipDirection(args.source_text, args.text,
                             DifferentiableClip(ClipEncoders.from_file(args.clip_model, device=device)))
    from ..synthfaces.synthclip import SYNTHCLIP_TEMPLATES, load_synthclip, unknown_words_message
    synthclip = load_synthclip(args.synthclip, device).requires_grad_(False)
    unknown = unknown_words_message(synthclip, [args.source_text, args.text])
    if unknown:
        raise SystemExit(f"sdft-lite edit: error: {unknown}; for free text use --encoder clip (OpenAI CLIP weights)")
    return ClipDirection(args.source_text, args.text, synthclip, templates=SYNTHCLIP_TEMPLATES)


def run_edit(args: argparse.Namespace) -> int:
    from ..config import pick_device
    from ..data import load_image_folder
    from ..editing.asyrp import (AsyrpConfig, DeltaBlock, asyrp_schedules, edit_images, invert, load_delta, save_delta,
                        train_delta_block)
    from ..editing.outputs import pair_names, save_pairs_folder, save_rows_grid, slug

    device = pick_device(args.device)
    unet = _load_model(args.model, args.weights, device)
    direction = (text_direction(args, device) if args.text else
                 parse_direction(args.direction, args.classifier, args.clip_model, device, args.all_heads))
    config = AsyrpConfig(t_edit=args.t_edit, t_edit_upper=args.t_edit_upper, t_boost=args.t_boost,
                         scale=args.scale, steps=args.steps,
                         inversion_steps=args.inversion_steps, epochs=args.epochs, lr=args.lr,
                         batch=args.train_batch)
    tag, out = slug(direction.name), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.delta:
        delta, trained_for, _ = load_delta(args.delta)
        if trained_for != direction.name:
            raise SystemExit(f"{args.delta} was trained for [{trained_for}], not [{direction.name}]")
        delta = delta.to(device)
        delta_path = Path(args.delta)
    else:
        train_set = load_image_folder(args.train_input or args.input, unet.config.image_size, args.n_train)
        x_train = train_set.batch(torch.arange(len(train_set)), device)
        inversion, editing = asyrp_schedules(config)
        print(f"edit [{direction.name}] training Δh on {len(train_set)} images for {config.epochs} epochs "
              f"(t_edit={config.t_edit}, steps={config.steps}) on {device}")
        delta = DeltaBlock.for_unet(unet).to(device)
        with (out / f"train_log_{tag}.jsonl").open("w", encoding="utf-8") as log:
            history = train_delta_block(unet, delta, x_train, invert(unet, x_train, inversion), direction, editing,
                                        config, lambda record: log.write(json.dumps(record, ensure_ascii=False) + "\n"))
        delta_path = save_delta(delta, out / f"delta_{tag}.pt", direction.name, config)
        print(f"edit [{direction.name}] loss {history[0]['loss']:.4f} → {history[-1]['loss']:.4f}; Δh saved to "
              f"{delta_path}")
    data = load_image_folder(args.input, unet.config.image_size, args.n)
    results = []
    for first in range(0, len(data), args.batch):
        x0 = data.batch(torch.arange(first, min(first + args.batch, len(data))), device)
        results.append(edit_images(unet, delta, x0, direction.name, config, seed=args.seed + first))
    inputs = torch.cat([r["input"] for r in results]).cpu()
    original = torch.cat([r["original"] for r in results]).cpu().clamp(-1, 1)
    edited = torch.cat([r["edited"] for r in results]).cpu().clamp(-1, 1)
    seconds = time.perf_counter() - started
    pairs = save_pairs_folder(inputs, edited, out, pair_names(data.files))
    grid = save_rows_grid([inputs, original, edited], out / f"grid_{tag}.png")
    info = {"direction": direction.name, "model": args.model, "delta": str(delta_path), "config": asdict(config),
            "n": len(data), "seed": args.seed, "seconds": round(seconds, 2), "pairs": str(pairs),
            "grid_rows": ["input", "reconstruction (no Δh)", f"edited [{direction.name}]"]}
    (out / f"edit_{tag}.json").write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"edit [{direction.name}] wrote {len(data)} pairs to {pairs} and {grid} in {seconds:.1f} s")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# train-dse


def run_train_dse(args: argparse.Namespace) -> int:
    from ..config import pick_device
    from ..editing.dse import DSE_PRESETS, preset_for_size, save_dse, train_dse

    device = pick_device(args.device)
    preset = preset_for_size(args.size) if args.preset == "auto" else args.preset
    config = DSE_PRESETS[preset]().replace(image_size=args.size)
    losses = []

    def log(step: int, loss: float) -> None:
        losses.append(loss)
        if step % max(1, args.steps // 10) == 0 or step == args.steps - 1:
            print(f"train-dse step {step:5d}/{args.steps} loss {loss:.4f}")

    started = time.perf_counter()
    model = train_dse(args.source_dir, args.target_dir, config, args.steps, args.batch, device, args.limit,
                      callback=log, lr=args.lr, seed=args.seed)
    info = {"source_dir": args.source_dir, "target_dir": args.target_dir, "preset": preset, "size": args.size,
            "steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed,
            "first_loss": losses[0], "last_loss": losses[-1], "seconds": round(time.perf_counter() - started, 1)}
    path = save_dse(model.cpu(), args.out, info)
    print(f"train-dse wrote {path} ({preset} trunk, loss {losses[0]:.4f} → {losses[-1]:.4f})")
    return 0
