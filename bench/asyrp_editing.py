"""Asyrp's smile edit on SynthFaces, judged honestly (``experiments.editing_table``), in four parts (GPU):

0. ``renderer``: the judges on the renderer's perfect edit (each neutral test face and its twin with a smile,
   every other draw the same): what a flawless edit scores, so the bar's numbers can be read against it.
1. ``survival``: how long each model keeps a smile it is handed (the curve the edit window comes from).
2. ``bar``: the edit on the SOURCE model (neutral photos; the photo domain has smiles), each direction (SynthCLIP
   text, classifier all heads) × each window × each recipe (``--bar-recipes``: the L1 weight λ_L1 and Δh's
   inference strength c, the two knobs that trade smiles for the other attributes kept) × seeds, each judged by
   the other instrument, against the bar: smiling ≥ 0.8, reconstruction smiling ≤ 0.02, attributes kept ≥ 0.95,
   PSNR ≥ 27 dB.
3. ``table``: the paper's Table 2 analogue — naive, SDFT (λ = 0.1, 1, 3, 10) and the two SDFT λ = 1 weightings
   that keep the most smiles (constant, min-SNR; the benchmark's Table 4 models) edit held-out neutral
   limited-target portraits with the window that passed the bar (``--table-windows survival``: each model's own
   window, from its survival curve), both directions, seeds.

    python bench/asyrp_editing.py --out $OUT/edit --workers 16                       # GPU, everything, 3 seeds
    python bench/asyrp_editing.py --out /tmp/edit --quick --seeds 0 --workers 1      # CPU, shipped quick models
    python bench/asyrp_editing.py --out $OUT/t64 --workers 3 --source source64.pt --parts survival,table \
        --directions classifier --table-windows survival --previous results/synthfaces_editing/editing.json \
        --finetune-save-every 100 --resume
                                          # the Table 2 analogue on a 64-px source model's fine-tunings (GPU;
                                          # repeated, with --previous its last editing.json, until it finishes)
    python bench/asyrp_editing.py --out $OUT/val --workers 6 --source source64.pt --parts bar --seeds 0 \
        --bar-directions classifier --windows 200,500 --bar-recipes '3:1;3:0.9;3:0.8' --bar-split validation \
        --previous results/synthfaces_editing/editing.json
                                          # Δh's strength chosen on validation photos, reported on the test rows

Each job runs in its own process (``--workers`` at a time); ``editing.json`` is rewritten as jobs finish, so a
time-out keeps what ended, and ``--previous`` that file with ``--resume`` runs only what is missing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from concurrent.futures import as_completed
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdft_lite.config import hardware, pick_device  # noqa: E402
from sdft_lite.editing.asyrp import AsyrpConfig  # noqa: E402
from sdft_lite.experiments.benchmark import BenchmarkConfig  # noqa: E402
from sdft_lite.experiments.benchmark import summarize as mean_sd  # noqa: E402  (mean ± sd over seeds)
from sdft_lite.experiments.editing_table import (EVAL_SPLITS, SHIPPED_SIZE, EditBenchConfig,  # noqa: E402
                                                 edit_window, passes_source_bar, plain_label,
                                                 renderer_edit_scores, sized, smile_survival, smiling_faces,
                                                 with_window)
from sdft_lite.experiments.workers import worker_pool  # noqa: E402
from sdft_lite.experiments.zoo import on_source  # noqa: E402
from sdft_lite.sdft import SDFTConfig  # noqa: E402
from sdft_lite.train import TrainConfig  # noqa: E402
from provenance import commit  # noqa: E402  (bench/ is this script's folder)

WINDOWS = ((300, 500), (200, 500), (300, 600))
TABLE_MODELS = ("naive", "SDFT λ=0.1", "SDFT λ=1", "SDFT λ=3", "SDFT λ=10",
                "SDFT λ=1, constant w", "SDFT λ=1, min_snr w")   # the benchmark's labels (BenchmarkConfig.runs)
QUICK_MODELS = ("naive", "SDFT λ=1", "SDFT λ=3")             # the quick models the package ships
SURVIVAL_T = (0, 100, 200, 300, 400, 500, 600, 800)


def with_recipe(config: EditBenchConfig, lambda_l1: float, scale: float) -> EditBenchConfig:
    return dataclasses.replace(config, asyrp=dataclasses.replace(config.asyrp, lambda_l1=lambda_l1, scale=scale))


def model_config(label: str, seed: int, quick: bool, smile_share: float = 0.0,
                 source: str | None = None) -> TrainConfig | None:
    """The zoo config of a model label ("source …" → None: the source model). Full mode: the full benchmark's run
    of that label and seed (fine-tuned on a limited target with ``smile_share`` smiling portraits), so the edit
    uses the very models the retention tables measured; with ``source`` (a checkpoint, e.g. 64 px) the same run
    fine-tunes that model instead (``zoo.on_source``), on the limited target at its size."""
    label = plain_label(label)
    if label == "source":
        return None
    if quick:
        if smile_share:
            raise SystemExit("--quick edits the shipped quick models, fine-tuned on the plain limited target: "
                             "drop --limited-smile-share")
        if label not in QUICK_MODELS:
            raise SystemExit(f"no quick model {label!r}: the package ships {', '.join(QUICK_MODELS)}")
        if label == "naive":
            return TrainConfig.synthfaces_quick(mode="naive", loss=SDFTConfig.naive(), seed=0)
        return TrainConfig.synthfaces_quick(mode="sdft", loss=SDFTConfig.symmetric(float(label.split("=")[1])), seed=0)
    runs = dict(BenchmarkConfig.full(seeds=(seed,), finetune=TrainConfig.synthfaces_full(
        target_smile_share=smile_share)).runs())
    if label not in runs:
        raise SystemExit(f"no benchmark model {label!r}; the full benchmark has {', '.join(runs)}")
    return on_source(runs[label], source) if source else runs[label]


def load_model(label: str, seed: int, quick: bool, device: str, smile_share: float = 0.0,
               source: str | None = None):
    """The model a job edits: a fine-tuned zoo model, the shipped source model, or ``source`` (a checkpoint)."""
    from sdft_lite.checkpoint import load_unet
    from sdft_lite.experiments.zoo import finetuned, source_model
    config = model_config(label, seed, quick, smile_share, source)
    if config is None:
        return (load_unet(source) if source else source_model()).to(device).eval()
    return finetuned(config, device=device).to(device).eval()


def source_size(path: str) -> int:
    """The image size of a source checkpoint, from its U-Net config."""
    from sdft_lite.checkpoint import load_unet
    return load_unet(path).config.image_size


def load_instruments(device: str, synthclip_path: str | None):
    from sdft_lite.assets import asset_path
    from sdft_lite.experiments.editing_table import EditInstruments
    from sdft_lite.synthfaces import load_classifier
    from sdft_lite.synthfaces.realism import load_feature_extractor
    from sdft_lite.synthfaces.synthclip import load_synthclip
    classifier = load_classifier(asset_path("synthfaces/classifier.pt"), device).requires_grad_(False)
    synthclip = load_synthclip(synthclip_path, device).requires_grad_(False)
    return EditInstruments(classifier, synthclip, load_feature_extractor(asset_path("synthfaces/realism.pt"), device))


def edit_job(job: dict, device: str, synthclip_path: str | None, threads: int) -> dict:
    """One Asyrp run: {part, model, seed, config} → the job plus ``asyrp_table_row``'s scores."""
    from sdft_lite.experiments.editing_table import asyrp_table_row
    torch.set_num_threads(threads)
    instruments = load_instruments(device, synthclip_path)
    unet = load_model(job["model"], job["seed"], job["quick"], device, job.get("smile_share", 0.0),
                      job.get("source"))
    return {**job_identity(job), **asyrp_table_row(unet, instruments, job["config"], device)}


def job_identity(job: dict) -> dict:
    """What names a job's row: part, model, seed, window, direction, recipe, image size and held-out split."""
    config = job["config"]
    return {"part": job["part"], "model": job["model"], "seed": job["seed"],
            "window": (config.asyrp.t_edit, config.asyrp.t_edit_upper), "direction_kind": config.direction,
            "lambda_l1": config.asyrp.lambda_l1, "scale": config.asyrp.scale, "size": config.size,
            "split": config.eval_split}


def not_yet_run(jobs: list[dict], rows: list[dict]) -> list[dict]:
    """The jobs without a row (same setting and seed) among ``rows``: what a resumed call has left to run."""
    done = {(*setting(row), row["seed"]) for row in rows}
    return [job for job in jobs if (*setting(job_identity(job)), job["seed"]) not in done]


def run_jobs(jobs: list[dict], args, write) -> list[dict]:
    rows = []
    if args.workers <= 1:
        for job in jobs:
            rows.append(edit_job(job, args.device, args.synthclip, 2))
            write(rows)
        return rows
    with worker_pool(args.workers) as pool:   # stopped by a time limit, it leaves no worker behind
        futures = [pool.submit(edit_job, job, args.device, args.synthclip, 1) for job in jobs]
        for future in as_completed(futures):
            rows.append(future.result())
            row = rows[-1]
            print(f"{row['part']} {row['model']} seed {row['seed']} {row['direction_kind']} window {row['window']}: "
                  f"smiling {row['edit']['smiling']:.3f} (recon {row['reconstruction']['smiling']:.3f}) kept "
                  f"{row['edit']['kept_mean']:.3f} PSNR {row['edit']['psnr_db']:.1f}", flush=True)
            write(rows)
    return rows


def survival_curves(args, models: list[str], size: int = SHIPPED_SIZE) -> dict:
    """{label: {t: share of handed-in smiles kept}}; a "source …" label is the bar's model (``--source``); every
    model is handed faces at ``size``."""
    from sdft_lite.assets import asset_path
    from sdft_lite.synthfaces import load_classifier
    classifier = load_classifier(asset_path("synthfaces/classifier.pt"), args.device)
    curves = {}
    for label in models:
        is_source = label.startswith("source")
        faces = smiling_faces(args.survival_n, size, "photo" if is_source else "portrait").to(args.device)
        unet = load_model(label, 0, args.quick, args.device, args.limited_smile_share, args.source)
        curves[label] = smile_survival(unet, classifier, faces, SURVIVAL_T, "20" if args.quick else "40")
        print(f"survival {label}: {curves[label]}", flush=True)
    return curves


def bar_windows(spec: str, survival: dict, label: str) -> list[tuple[int, int]]:
    """The bar's windows from ``--windows``: 'LOW,HIGH' pairs, or 'survival' for the window of the bar model's own
    smile-survival curve (``edit_window``), ';'-separated."""
    windows = []
    for item in spec.split(";"):
        if item.strip() == "survival":
            if label not in survival:
                raise SystemExit(f"--windows survival needs the smile-survival curve of {label}: add the survival "
                                 "part or pass --previous with an editing.json that has it")
            windows.append(edit_window({int(t): share for t, share in survival[label].items()}))
        else:
            windows.append(tuple(int(t) for t in item.split(",")))
    return list(dict.fromkeys(windows))   # a window named twice runs once


def own_windows(survival: dict, models) -> dict[str, tuple[int, int]]:
    """Each model's edit window from its own smile-survival curve (where that model decides the mouth)."""
    missing = [model for model in models if model not in survival]
    if missing:
        raise SystemExit(f"--table-windows survival needs the smile-survival curves of {', '.join(missing)}: run "
                         "the survival part in this call or pass --previous with an editing.json that has them")
    return {model: edit_window({int(t): share for t, share in survival[model].items()}) for model in models}


def merged_windows(earlier: dict, windows: dict) -> dict:
    """The table windows after a table run: {direction: {model: [low, high]}} of this run's models, and an earlier
    run's windows of every other model (of any size: their rows are still the table's current ones)."""
    merged = dict(earlier)
    for kind, by_model in windows.items():
        kept = earlier.get(kind) if isinstance(earlier.get(kind), dict) else {}   # older files: one window
        merged[kind] = {**kept, **{m: list(w) for m, w in by_model.items()}}
    return merged


def earlier_calls(previous: dict) -> list[dict]:
    """Provenance of every call whose rows or curves a --previous file carries, oldest first: the file's own call
    after the calls it carried in turn."""
    own = {k: previous[k] for k in ("command", "commit", "commit_note", "device", "wall_seconds", "finetuning")
           if k in previous}
    carried = previous.get("earlier_calls", [previous["previous"]] if "previous" in previous else [])
    return [*carried, own]


def carried(previous: dict) -> dict:
    """What a run keeps of an earlier result besides its rows: the survival curves, the windows its table and bar
    rows were edited in and the renderer's perfect edit (a part run again replaces them), the provenance of every
    earlier call, and the notes written into it by hand (keys ending in ``_note``; a ``commit_note`` stays with
    its call)."""
    kept = {"survival": previous.get("survival", {}), "earlier_calls": earlier_calls(previous)}
    notes = [key for key in previous if key.endswith("_note") and key != "commit_note"]
    for key in ("table_windows", "bar_windows", "renderer_edit", *notes):
        if key in previous:
            kept[key] = previous[key]
    return kept


DEFAULT_RECIPE = (AsyrpConfig().lambda_l1, AsyrpConfig().scale)   # rows written before recipes were recorded


def recipe(row: dict) -> tuple[float, float]:
    """(λ_L1, c) of a run: the L1 term's weight in Δh's loss and Δh's strength at inference."""
    return row.get("lambda_l1", DEFAULT_RECIPE[0]), row.get("scale", DEFAULT_RECIPE[1])


def parse_recipe(text: str) -> tuple[float, float]:
    """'λ_L1:c' → (λ_L1, c)."""
    lambda_l1, scale = (float(v) for v in text.split(":"))
    return lambda_l1, scale


def setting(row: dict) -> tuple:
    """What one table cell is the mean over seeds of: (part, model, direction, window, λ_L1, c, image size,
    held-out split); rows written before sizes or splits were recorded are 32 px and "test"."""
    return (row["part"], row["model"], row["direction_kind"], tuple(row["window"]), *recipe(row),
            row.get("size", SHIPPED_SIZE), row.get("split", "test"))


def latest_runs(rows: list[dict]) -> list[dict]:
    """One row per setting and seed, the latest: a run that repeats one --previous carried replaces it instead of
    counting as another seed."""
    return list({(*setting(row), row["seed"]): row for row in rows}.values())


def summarize(rows: list[dict]) -> list[dict]:
    """Mean ± sd over seeds per setting (part, model, direction, window, λ_L1, c, image size, split)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(setting(row), []).append(row)
    summary = []
    order = {model: i for i, model in enumerate(("source", *TABLE_MODELS))}

    def place(group: tuple) -> tuple:   # part, direction, size, the benchmark's model order, window, recipe, split
        part, model, kind, window, lambda_l1, scale, size, split = group[0]
        return part, kind, size, order.get(plain_label(model), 99), window, lambda_l1, scale, split != "test"
    for (part, model, kind, window, lambda_l1, scale, size, split), runs in sorted(groups.items(), key=place):
        entry = {"part": part, "model": model, "direction_kind": kind, "window": window, "seeds": len(runs),
                 "judge": runs[0]["judge"]}
        if (lambda_l1, scale) != DEFAULT_RECIPE:
            entry.update(lambda_l1=lambda_l1, scale=scale)
        if size != SHIPPED_SIZE:
            entry["size"] = size
        if split != "test":
            entry["split"] = split
        for kind_ in ("edit", "reconstruction"):
            for metric, stats in mean_sd([r[kind_] for r in runs]).items():
                entry[f"{kind_}_{metric}"] = stats
        if part == "bar":
            means = {k: {"smiling": entry[f"{k}_smiling"]["mean"], "kept_mean": entry[f"{k}_kept_mean"]["mean"],
                         "psnr_db": entry[f"{k}_psnr_db"]["mean"]} for k in ("edit", "reconstruction")}
            entry["bar"] = passes_source_bar(means)
        summary.append(entry)
    return summary


def chosen_window(summary: list[dict], kind: str, recipe_: tuple[float, float] = DEFAULT_RECIPE,
                  size: int = SHIPPED_SIZE) -> tuple[int, int] | None:
    """The bar's window for a direction, recipe and source size: the one passing every criterion with the most
    smiles (a 64-px table edits in the window that passed on the 64-px source, not on the 32-px one)."""
    passing = [e for e in summary if e["part"] == "bar" and e["direction_kind"] == kind and all(e["bar"].values())
               and recipe(e) == recipe_ and e.get("size", SHIPPED_SIZE) == size and "split" not in e]
    if not passing:
        return None
    return tuple(max(passing, key=lambda e: e["edit_smiling"]["mean"])["window"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--parts", default="renderer,survival,bar,table",
                        help="renderer: the judges on the renderer's perfect edit (each neutral test face and its "
                             "smiling twin; CPU is enough); survival; bar; table")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--synthclip", default=None, help="a SynthCLIP file (default: the shipped one)")
    parser.add_argument("--windows", default=";".join(f"{a},{b}" for a, b in WINDOWS),
                        help="the bar's windows, 'LOW,HIGH;LOW,HIGH;…'; 'survival' is the window of the bar "
                             "model's own smile-survival curve (edit_window)")
    parser.add_argument("--window", default="300,500", help="the table's window when no bar window passed")
    parser.add_argument("--bar-directions", default="synthclip,classifier", help="the directions the bar edits with")
    parser.add_argument("--bar-split", choices=EVAL_SPLITS, default="test",
                        help="the held-out photos the bar edits: 'validation' (faces of their own) chooses a recipe "
                             "that the test rows then report, so no choice is made on the test photos")
    parser.add_argument("--bar-recipes", default=f"{DEFAULT_RECIPE[0]:g}:{DEFAULT_RECIPE[1]:g}",
                        help="the bar's Δh recipes, 'λ_L1:c;…' (λ_L1 weighs the L1 term that keeps the edit near "
                             "the input; c is Δh's strength at inference), e.g. '3:1;10:1;3:0.8;3:0.6'")
    parser.add_argument("--table-recipe", default=f"{DEFAULT_RECIPE[0]:g}:{DEFAULT_RECIPE[1]:g}",
                        help="the table's Δh recipe, 'λ_L1:c' (default: Asyrp's)")
    parser.add_argument("--table-windows", choices=("bar", "survival"), default="bar",
                        help="the table's edit windows: the bar's (one for every model) or each model's own, from "
                             "its smile-survival curve (edit_window; needs the survival part, here or --previous)")
    parser.add_argument("--directions", default="synthclip,classifier", help="which directions the table edits with")
    parser.add_argument("--previous", help="an earlier editing.json whose survival curves and rows this run keeps "
                                           "(e.g. the bar, then the table in a second GPU call)")
    parser.add_argument("--resume", action="store_true",
                        help="with --previous: run only the bar and table jobs whose rows it lacks (a call cut off "
                             "by a time limit goes on where it stopped; without it, every job runs again)")
    parser.add_argument("--finetune-save-every", type=int, default=0,
                        help="checkpoint the table's fine-tunings every N steps, so that a call cut off by a time "
                             "limit continues them in the next call (same weights, same zoo entries)")
    parser.add_argument("--quick", action="store_true", help="CPU: the shipped quick models, tiny edit settings")
    parser.add_argument("--survival-n", type=int, default=500)
    parser.add_argument("--limited-smile-share", type=float, default=0.0,
                        help="edit the models fine-tuned on a limited target with this share of smiling "
                             "portraits (as bench/synthfaces_reproduce.py --limited-smile-share); use a separate "
                             "--out, and --previous only with an earlier run of the same share")
    parser.add_argument("--source", default=None,
                        help="a source checkpoint to use instead of the shipped 32-px model (e.g. one written by "
                             "`sdft-lite synthfaces train-source --unet-preset small64`): the bar edits it, the "
                             "table fine-tunes it into the benchmark's models on the limited target at its size; "
                             "faces are rendered at its size and read by the instruments at theirs; rows and "
                             "curves are named e.g. 'source 64 px', 'naive 64 px'. Without the table part, "
                             "survival measures that model alone")
    parser.add_argument("--models", default=";".join(TABLE_MODELS),
                        help="the table's models, ';'-separated benchmark labels (default: %(default)s)")
    args = parser.parse_args()
    args.device = str(pick_device())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    parts = args.parts.split(",")
    base = EditBenchConfig.quick() if args.quick else EditBenchConfig()
    if args.source:
        if args.quick:
            parser.error("--source edits a model trained on a GPU: drop --quick")
        base = dataclasses.replace(base, size=source_size(args.source))
    bar_model = sized("source", base.size)   # "source", or e.g. "source 64 px"
    started = time.perf_counter()
    result = {"command": " ".join(sys.argv), "commit": commit(), "device": hardware(), "seeds": seeds,
              "config": {"n_train": base.n_train, "n_test": base.n_test, "size": base.size,
                         "source": args.source or "the shipped source model",
                         "asyrp": dataclasses.asdict(base.asyrp),
                         "limited_smile_share": args.limited_smile_share}}
    rows: list[dict] = []
    if args.previous:
        previous = json.loads(Path(args.previous).read_text())
        rows += previous["rows"]
        result.update(carried(previous))

    def write(new_rows: list[dict] | None = None) -> None:
        result["rows"] = latest_runs(rows + (new_rows or []))
        result["summary"] = summarize(result["rows"])
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        (out / "editing.json").write_text(json.dumps(result, indent=1, default=float))

    table_models = tuple(sized(m, base.size) for m in (QUICK_MODELS if args.quick else args.models.split(";")))
    # with --source, survival alone measures that model; the table fine-tunes it into the table's models first
    fine_tuned_needed = "table" in parts or ("survival" in parts and not args.source)
    if "renderer" in parts:   # what a flawless edit scores: the ceiling the judges allow
        instruments = load_instruments(args.device, args.synthclip)
        perfect = {sized(faces, base.size): renderer_edit_scores(instruments, faces, base.n_test, base.size,
                                                                 base.num_reference, args.device)
                   for faces in ("source", "limited")}   # 32-px scores keep their plain keys
        result["renderer_edit"] = {**result.get("renderer_edit", {}), **perfect}
        write()
    if fine_tuned_needed:   # every fine-tuning first, in parallel (MPS helps)
        from sdft_lite.experiments.zoo import finetune_many
        timer = time.perf_counter()
        configs = [model_config(m, s, args.quick, args.limited_smile_share, args.source)
                   for m in table_models for s in seeds]
        trained = finetune_many([dataclasses.replace(c, save_every=args.finetune_save_every) for c in configs],
                                workers=args.workers, device=args.device)
        result["finetuning"] = {"trained": len(trained), "seconds": round(time.perf_counter() - timer, 1)}
        write()
        print(f"fine-tuned {len(trained)} models in {time.perf_counter() - timer:.0f} s", flush=True)
    if "survival" in parts:   # only the curves --previous lacks
        wanted = (bar_model, *table_models) if fine_tuned_needed else (bar_model,)
        missing = [m for m in wanted if m not in result.get("survival", {})]
        result["survival"] = {**result.get("survival", {}), **survival_curves(args, missing, base.size)}
        write()
    if "bar" in parts:
        recipes = [parse_recipe(pair) for pair in args.bar_recipes.split(";")]
        windows = bar_windows(args.windows, result.get("survival", {}), bar_model)
        result["bar_windows"] = {**result.get("bar_windows", {}), bar_model: [list(w) for w in windows]}
        jobs = [{"part": "bar", "model": "source", "seed": seed, "quick": args.quick, "source": args.source,
                 "config": with_recipe(with_window(dataclasses.replace(base, faces="source", direction=kind, seed=seed,
                                                                      eval_split=args.bar_split), window), *recipe_)}
                for window in windows for kind in args.bar_directions.split(",") for recipe_ in recipes
                for seed in seeds]
        rows += run_jobs(not_yet_run(jobs, rows) if args.resume else jobs, args, write)
        write()
    if "table" in parts:
        summary = summarize(rows)
        fallback = tuple(int(t) for t in args.window.split(","))
        table_recipe = parse_recipe(args.table_recipe)
        kinds = args.directions.split(",")
        if args.table_windows == "survival":
            windows = {kind: own_windows(result.get("survival", {}), table_models) for kind in kinds}
        else:
            passed = {kind: chosen_window(summary, kind, table_recipe, base.size) or fallback for kind in kinds}
            windows = {kind: dict.fromkeys(table_models, passed[kind]) for kind in kinds}
        result["table_windows"] = merged_windows(result.get("table_windows", {}), windows)
        jobs = [{"part": "table", "model": model, "seed": seed, "quick": args.quick,
                 "smile_share": args.limited_smile_share, "source": args.source,
                 "config": with_recipe(with_window(dataclasses.replace(base, faces="limited", direction=kind,
                                                                       seed=seed), windows[kind][model]),
                                       *table_recipe)}
                for model in table_models for kind in kinds for seed in seeds]
        rows += run_jobs(not_yet_run(jobs, rows) if args.resume else jobs, args, write)
        write()
    print(f"done in {time.perf_counter() - started:.0f} s on {hardware()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
