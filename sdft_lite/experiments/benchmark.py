"""The SynthFaces benchmark: does SDFT keep what the limited target lacks? (Hur et al., WACV 2024, §4 and Fig. 1)

The source model knows every attribute; the limited portrait target (the MetFaces stand-in) has no dark skin, no
eyewear and no smiles. Every model is sampled from the SAME noises as the source model (deterministic DDIM, so
image i of two models is a shared-noise pair), and the attribute classifier reads both samples:

    retention(attribute) = #{i : source sample i shows it  and  fine-tuned sample i shows it}
                           / #{i : source sample i shows it}

"Dark skin" is skin level ≥ 2 (medium, brown, dark: every tone the limited target lacks); "eyewear" is glasses or
sunglasses; "expression" is a closed or open smile. Beside retention: the portrait-style rate (did the model adopt
the target style?), realism (Fréchet distance of the shipped realism net's features to held-out full-target and
limited-target renders; lower = more like real portraits, see ``realism.py``) and SDEdit translation of held-out
photos (the authors' DDIM variant, ``editing.sdedit.sdedit_ddim``): attributes kept from input to output.

Data path. The limited target is written as an image folder (PNGs + labels.csv, like MetFaces) and read back with
``sdft_lite.data.load_image_folder``; the benchmark checks that the folder is, pixel for pixel, the data the
cached fine-tuning runs (``zoo.finetuned``, rendered in memory) train on, so chapters and the benchmark share one
cache. The held-out evaluation sets are written and read back the same way.

    result = run_benchmark(BenchmarkConfig.quick(), "runs/benchmark")   # results.json, grid.png, frontier.png
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import figures
from ..assets import asset_path
from ..config import hardware, pick_device
from ..data import load_image_folder
from ..editing.sdedit import sdedit_ddim
from ..sample import generate, to_uint8
from ..schedule import make_schedule, respace
from ..sdft import SDFTConfig
from ..train import TrainConfig
from ..weighting import Constant, MinSNR
from ..synthfaces.attributes import FACE_ATTRIBUTES, FaceLabels
from ..synthfaces.classifier import AttributeClassifier, load_classifier
from ..synthfaces.domains import DomainSpec, read_labels, write_domain
from ..metrics.frechet import frechet_distance_of_features
from ..synthfaces.realism import load_feature_extractor
from .sample_cache import cached_images, tensor_digest
from .zoo import finetune_many, finetuned, is_cached, limited_target, source_model
from .zoo import key as zoo_key

CLASSIFIER, REALISM = "synthfaces/classifier.pt", "synthfaces/realism.pt"
SOURCE_LABEL = "source"
GRID_TITLE = "each column one noise, each row a model (DDIM, η = 0)"
ABLATION_WEIGHTINGS = {"constant": Constant(), "min_snr": MinSNR(5.0)}   # the paper's Table 4 (both terms)
GRID_IMAGES = "grid_images.npz"   # the sample grid's images, so that its figure can be redrawn


def save_grid_images(grid: dict[str, torch.Tensor], path: Path) -> Path:
    """The images of a sample grid, {label: [N, C, H, W] in [−1, 1]}, as uint8 with their labels in order."""
    np.savez_compressed(path, labels=np.array(list(grid)), images=np.stack([to_uint8(x) for x in grid.values()]))
    return path


def load_grid_images(path: Path) -> dict[str, torch.Tensor]:
    """What :func:`save_grid_images` wrote: {label: [N, C, H, W] in [−1, 1]}, at uint8 precision."""
    with np.load(path) as stored:
        images = torch.from_numpy(stored["images"]).permute(0, 1, 4, 2, 3).float() / 127.5 - 1
        return dict(zip(stored["labels"].tolist(), images))


# ---- what is measured -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AbsentAttribute:
    """An attribute the limited target lacks: ``attribute`` at level ≥ ``min_level``."""

    key: str
    attribute: str
    min_level: int

    def shown(self, labels: FaceLabels) -> np.ndarray:
        """[N] bool: which faces show it."""
        return getattr(labels, self.attribute) >= self.min_level


ABSENT = (AbsentAttribute("dark_skin", "skin", 2),       # medium, brown, dark (the target has the two lightest)
          AbsentAttribute("eyewear", "eyewear", 1),      # glasses or sunglasses
          AbsentAttribute("expression", "expression", 1))  # closed or open smile


def retention(before: FaceLabels, after: FaceLabels, absent: AbsentAttribute) -> float:
    """Among faces i whose ``before`` label shows ``absent``, the fraction whose ``after`` label shows it too
    (NaN when no face shows it). before/after: labels of the same N noises (or the same N inputs)."""
    had = absent.shown(before)
    return float((had & absent.shown(after)).sum() / had.sum()) if had.any() else math.nan


def style_rate(labels: FaceLabels) -> float:
    """Fraction of faces the classifier reads as portraits (the target style)."""
    return float((labels.style == 1).mean())


# ---- configuration --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BenchmarkConfig:
    """Which models, how many seeds and noises, and how they are evaluated."""

    name: str = "custom"
    finetune: TrainConfig = TrainConfig.synthfaces_full()   # the budget every model gets (mode, loss, seed per run)
    scratch: bool = True                 # a random init of the same U-Net, trained on the limited target
    naive: bool = True
    lams: tuple[float, ...] = (0.1, 1.0, 3.0, 10.0)   # SDFT λ sweep (λ_d = λ_aux), P2 weights, aux on
    ablation_lam: float = 1.0            # λ of the ablations below
    ablation_weightings: tuple[str, ...] = ()   # extra weighting schemes: "constant", "min_snr" (Table 4)
    ablate_aux: bool = False             # also SDFT without the auxiliary term (Fig. 8)
    seeds: tuple[int, ...] = (0,)        # fine-tuning seeds (mean ± sd over them)
    num_noises: int = 1000               # shared noises per model
    noise_seed: int = 1234
    sample_steps: str = "ddim40"         # deterministic DDIM (η = 0)
    num_sdedit: int = 500                # held-out photos translated by each model
    sdedit_steps: str = "ddim40"         # the authors' variant: perturb to t0 on this respacing, DDIM back
    sdedit_t0: int = 500
    num_reference: int = 1000            # held-out full / limited renders for realism
    grid_rows: int = 8                   # images per model in the sample grids (one noise or input photo each)
    batch_size: int = 250

    @classmethod
    def quick(cls, **changes) -> "BenchmarkConfig":
        """The CPU demo (≤ 10 min on 2 idle cores with an empty cache): naive vs SDFT λ = 3, 120 fine-tuning steps
        × batch 32 each, one seed, 128 shared noises sampled with DDIM-20, 48 SDEdit translations with DDIM-20
        (10 reverse steps from t = 450). λ = 3 because the paper's λ = 0.1 barely differs from naive on this data
        (the book's reproduction page); DDIM-20 because DDIM-10 leaves visible noise in this model's samples."""
        base = dict(name="quick", finetune=TrainConfig.synthfaces_quick(steps=120), scratch=False, lams=(3.0,), seeds=(0,),
                    num_noises=128, sample_steps="ddim20", num_sdedit=48, sdedit_steps="ddim20",
                    num_reference=1000, batch_size=128)
        return cls(**{**base, **changes})

    @classmethod
    def full(cls, **changes) -> "BenchmarkConfig":
        """The GPU benchmark: scratch, naive, the λ sweep and the ablations, 3 seeds, 1,000 noises, DDIM-40."""
        base = dict(name="full", finetune=TrainConfig.synthfaces_full(), lams=(0.1, 0.3, 1.0, 3.0, 10.0),
                    ablation_weightings=("constant", "min_snr"), ablate_aux=True, seeds=(0, 1, 2))
        return cls(**{**base, **changes})

    def runs(self) -> list[tuple[str, TrainConfig]]:
        """(label, config) of every fine-tuning run, seed by seed."""
        out, lam = [], self.ablation_lam
        for seed in self.seeds:
            def run(mode: str, loss: SDFTConfig = SDFTConfig.naive()) -> TrainConfig:
                return dataclasses.replace(self.finetune, mode=mode, loss=loss, seed=seed)
            if self.scratch:
                out.append(("scratch", run("scratch")))
            if self.naive:
                out.append(("naive", run("naive")))
            out += [(sdft_label(value), run("sdft", SDFTConfig.symmetric(value))) for value in self.lams]
            for name in self.ablation_weightings:
                weighting = ABLATION_WEIGHTINGS[name]
                out.append((sdft_label(lam, f"{name} w"), run("sdft", SDFTConfig.symmetric(
                    lam, distill_weighting=weighting, aux_weighting=weighting))))
            if self.ablate_aux:
                out.append((sdft_label(lam, "no aux"), run("sdft", SDFTConfig.symmetric(lam, lambda_aux=0.0))))
        return out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["finetune"] = self.finetune.to_dict()
        return d


def sdft_label(lam: float, variant: str = "") -> str:
    return f"SDFT λ={lam:g}" + (f", {variant}" if variant else "")


# ---- data: written as image folders, read back -----------------------------------------------------------------

@dataclass
class EvaluationData:
    """The held-out sets as read back from their folders. Images: uint8 [N, 3, S, S]."""

    full_target: torch.Tensor
    limited_target: torch.Tensor
    photos: torch.Tensor
    folders: dict[str, str]
    checks: dict[str, object]


def write_and_read(spec: DomainSpec, folder: Path, n: int, size: int, split: str) -> tuple[torch.Tensor, FaceLabels]:
    write_domain(spec, folder, n, size, seed=0, split=split)
    return load_image_folder(folder, size).images, read_labels(folder)[1]


def prepare_data(config: BenchmarkConfig, data_dir: Path, size: int) -> EvaluationData:
    """Write the limited training target and the held-out sets as image folders and read them back."""
    share = config.finetune.target_smile_share   # > 0: the limited target smiles scarcely, not never
    limited, full, source = DomainSpec.limited_target(share), DomainSpec.full_target(), DomainSpec.source()
    n_train, n_ref = config.finetune.num_images, config.num_reference
    train_images, train_labels = write_and_read(limited, data_dir / "limited_train", n_train, size, "train")
    if not torch.equal(train_images, limited_target(size, n_train, smile_share=share).images):
        raise RuntimeError("the written limited-target folder differs from the data zoo.finetuned trains on")
    full_images, _ = write_and_read(full, data_dir / "full_test", n_ref, size, "test")
    limited_images, _ = write_and_read(limited, data_dir / "limited_test", n_ref, size, "test")
    photos, _ = write_and_read(source, data_dir / "photo_test", config.num_sdedit, size, "test")
    excluded = {a.key: int(a.shown(train_labels).sum()) for a in ABSENT}
    checks = {"limited_folder_equals_training_data": True, "limited_train_faces_showing_absent": excluded}
    folders = {name: str(data_dir / name) for name in ("limited_train", "full_test", "limited_test", "photo_test")}
    return EvaluationData(full_images, limited_images, photos, folders, checks)


# ---- instruments and evaluation -------------------------------------------------------------------------------

@dataclass
class Instruments:
    """The shipped classifier and realism net, with the realism features of both references."""

    classifier: AttributeClassifier
    realism: Callable[..., torch.Tensor]
    reference: dict[str, torch.Tensor]

    @classmethod
    def load(cls, data: EvaluationData, device: torch.device) -> "Instruments":
        realism = load_feature_extractor(asset_path(REALISM), device)
        reference = {"full": realism(data.full_target), "limited": realism(data.limited_target)}
        return cls(load_classifier(asset_path(CLASSIFIER), device), realism, reference)

    def realism_scores(self, images: torch.Tensor, prefix: str = "") -> dict[str, float]:
        features = self.realism(images)
        return {f"{prefix}fd_{name}": frechet_distance_of_features(features, ref) for name, ref in self.reference.items()}


def sample_metrics(labels: FaceLabels, source_labels: FaceLabels, samples: torch.Tensor,
                   instruments: Instruments) -> dict[str, float]:
    """Retention vs the source's shared-noise samples, presence, style rate, realism. samples: [N, 3, S, S]."""
    metrics = {f"retain_{a.key}": retention(source_labels, labels, a) for a in ABSENT}
    metrics["retain_mean"] = float(np.nanmean([metrics[f"retain_{a.key}"] for a in ABSENT]))
    metrics.update({f"presence_{a.key}": float(a.shown(labels).mean()) for a in ABSENT})
    metrics["style_rate"] = style_rate(labels)
    metrics.update(instruments.realism_scores(samples))
    return metrics


def sdedit_metrics(outputs: torch.Tensor, input_labels: FaceLabels, instruments: Instruments) -> dict[str, float]:
    """Attributes kept from input photo to translated output (classifier labels of both), style rate, realism."""
    labels = instruments.classifier.predict(outputs)
    metrics = {f"sdedit_keep_{name}": float((getattr(labels, name) == getattr(input_labels, name)).mean())
               for name in FACE_ATTRIBUTES}
    metrics["sdedit_keep_mean"] = float(np.mean([metrics[f"sdedit_keep_{name}"] for name in FACE_ATTRIBUTES]))
    metrics.update({f"sdedit_retain_{a.key}": retention(input_labels, labels, a) for a in ABSENT})
    metrics["sdedit_style_rate"] = style_rate(labels)
    metrics.update(instruments.realism_scores(outputs, prefix="sdedit_"))
    return metrics


class Evaluator:
    """Samples a model from the shared noises and translates the shared photos; keeps the source's labels.

    With ``cache=True`` the samples and translations go through the sample cache (``sample_cache``), keyed by
    the model's weights and these settings: a chapter that evaluates models another chapter already sampled
    loads their images. ``cache_hits`` counts the image sets loaded so."""

    def __init__(self, config: BenchmarkConfig, data: EvaluationData, instruments: Instruments,
                 device: torch.device, size: int, cache: bool = False):
        self.config, self.instruments, self.device, self.size = config, instruments, device, size
        self.cache, self.cache_hits = cache, 0
        self.photos = data.photos.float() / 127.5 - 1.0
        self.photo_labels = instruments.classifier.predict(self.photos)
        generator = torch.Generator().manual_seed(config.noise_seed + 1)
        self.sdedit_noise = torch.randn(self.photos.shape, generator=generator)
        self.sdedit_schedule = respace(make_schedule("linear"), config.sdedit_steps)
        self.source_labels: FaceLabels | None = None

    def samples(self, model) -> torch.Tensor:
        """[num_noises, 3, S, S] in [-1, 1]: DDIM (η = 0) from the shared noises."""
        c = self.config
        settings = {"num": c.num_noises, "size": self.size, "steps": c.sample_steps, "seed": c.noise_seed,
                    "batch": c.batch_size}
        return self._images("samples", model, settings, lambda: generate(
            model.to(self.device), c.num_noises, self.size, c.sample_steps, seed=c.noise_seed,
            batch_size=c.batch_size, device=self.device))

    def translations(self, model) -> torch.Tensor:
        """[num_sdedit, 3, S, S] in [-1, 1]: SDEdit of the shared photos with the shared noise."""
        c = self.config
        settings = {"photos": tensor_digest(self.photos), "noise": tensor_digest(self.sdedit_noise),
                    "steps": c.sdedit_steps, "t0": c.sdedit_t0, "batch": c.batch_size}
        return self._images("sdedit", model, settings, lambda: self._translate(model))

    @torch.no_grad()
    def _translate(self, model) -> torch.Tensor:
        model, c, out = model.to(self.device).eval(), self.config, []
        for begin in range(0, len(self.photos), c.batch_size):
            x0 = self.photos[begin:begin + c.batch_size].to(self.device)
            noise = self.sdedit_noise[begin:begin + c.batch_size].to(self.device)
            out.append(sdedit_ddim(model, x0, self.sdedit_schedule, c.sdedit_t0, noise=noise).clamp(-1, 1).cpu())
        return torch.cat(out)

    def _images(self, kind: str, model, settings: dict, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if not self.cache:
            return compute()
        images, loaded = cached_images(kind, model, settings, self.device, compute)
        self.cache_hits += loaded
        return images

    def evaluate(self, model, translate: bool = True) -> tuple[dict[str, float], torch.Tensor, torch.Tensor | None]:
        """(metrics, samples [N, 3, S, S], SDEdit outputs or None). The first call must be the source model."""
        samples = self.samples(model)
        labels = self.instruments.classifier.predict(samples)
        if self.source_labels is None:
            self.source_labels = labels
        metrics = sample_metrics(labels, self.source_labels, samples, self.instruments)
        outputs = self.translations(model) if translate else None
        if outputs is not None:
            metrics.update(sdedit_metrics(outputs, self.photo_labels, self.instruments))
        model.cpu()
        return metrics, samples, outputs


# ---- the benchmark --------------------------------------------------------------------------------------------

def default_workers(device: torch.device) -> int:
    """Fine-tuning runs at once by default: 8 on a GPU (one small run leaves it mostly idle), 1 on a CPU."""
    return 8 if device.type == "cuda" else 1


def run_benchmark(config: BenchmarkConfig, out_dir: str | Path, device: str | None = None,
                  log: Callable[[str], None] | None = print, workers: int = 1) -> dict:
    """Fine-tune (or load from the zoo's cache) every model of ``config``, evaluate them all from the same noises,
    and write results.json, records.json, grid.png, sdedit_grid.png and frontier.png to ``out_dir``.
    ``workers`` > 1 fine-tunes that many models at once in separate processes first (worth it on a GPU, which one
    small run leaves mostly idle; on an H100, 8–12 runs at once with CUDA MPS finished the full set in minutes)."""
    log = log or (lambda message: None)
    started, cpu_started = time.perf_counter(), time.process_time()
    out_dir, device = Path(out_dir), pick_device(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    if workers > 1:
        finetune_many([spec for _, spec in config.runs()], workers=workers, device=str(device), log=log)
    source = source_model()
    size = source.config.image_size
    timer = time.perf_counter()
    data = prepare_data(config, out_dir / "data", size)
    evaluator = Evaluator(config, data, Instruments.load(data, device), device, size)
    wall = {"data_and_instruments": time.perf_counter() - timer}
    log(f"data written to {out_dir / 'data'} and read back ({wall['data_and_instruments']:.1f} s)")

    timer = time.perf_counter()
    source_metrics, source_samples, _ = evaluator.evaluate(source, translate=False)
    wall["evaluate source"] = time.perf_counter() - timer
    sample_grid, sdedit_grid = {SOURCE_LABEL: source_samples[:config.grid_rows]}, {}
    sdedit_grid["input photo"] = evaluator.photos[:config.grid_rows]
    runs = []
    for label, spec in config.runs():
        cached = is_cached(spec)
        timer = time.perf_counter()
        model = finetuned(spec, device=str(device))
        train_seconds = time.perf_counter() - timer
        log(f"{label} (seed {spec.seed}): {'loaded from cache' if cached else 'fine-tuned'} in {train_seconds:.0f} s")
        timer = time.perf_counter()
        metrics, samples, outputs = evaluator.evaluate(model)
        eval_seconds = time.perf_counter() - timer
        log(f"  evaluated in {eval_seconds:.0f} s: retain {metrics['retain_mean']:.2f}, "
            f"style {metrics['style_rate']:.2f}, FD full {metrics['fd_full']:.3g}")
        runs.append({"label": label, "seed": spec.seed, "config": spec.to_dict(), "cache_key": zoo_key(spec),
                     "loaded_from_cache": cached, "finetune_seconds": round(train_seconds, 1),
                     "evaluate_seconds": round(eval_seconds, 1), "metrics": metrics})
        if spec.seed == config.seeds[0]:
            sample_grid[label] = samples[:config.grid_rows]
            sdedit_grid[label] = outputs[:config.grid_rows]

    summary = {SOURCE_LABEL: summarize([source_metrics]),
               **{label: summarize([r["metrics"] for r in runs if r["label"] == label])
                  for label in dict.fromkeys(r["label"] for r in runs)}}
    files = {"results": out_dir / "results.json", "records": out_dir / "records.json", "grid": out_dir / "grid.png",
             "grid_images": out_dir / GRID_IMAGES, "sdedit_grid": out_dir / "sdedit_grid.png",
             "frontier": out_dir / "frontier.png"}
    save_grid_images(sample_grid, files["grid_images"])
    figures.save(figures.row_grid(sample_grid, GRID_TITLE), files["grid"])
    figures.save(figures.row_grid(sdedit_grid, f"SDEdit t0 = {config.sdedit_t0}: each column one input photo (top), "
                                               "each row a model's translation"), files["sdedit_grid"])
    figures.save(frontier_figure(summary, config), files["frontier"])
    wall["total"] = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started      # all threads of this process
    result = {
        "benchmark": "SynthFaces", "config": config.to_dict(), "hardware": hardware(), "cpu_model": cpu_model(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "absent_attributes": {a.key: f"{a.attribute} level >= {a.min_level}" for a in ABSENT},
        "definitions": DEFINITIONS, "data": {"folders": data.folders, "checks": data.checks},
        "source": source_metrics, "runs": runs, "summary": summary,
        "wall_seconds": {k: round(v, 1) for k, v in wall.items()}, "cpu_seconds": round(cpu_seconds, 1),
        "load_average": [round(v, 2) for v in os.getloadavg()], "files": {k: str(v) for k, v in files.items()},
    }
    result["records"] = reproduction_records(summary, config, result["hardware"])
    files["records"].write_text(json.dumps(result["records"], indent=2, ensure_ascii=False))
    files["results"].write_text(json.dumps(without_nan(result), indent=2, ensure_ascii=False))
    return result


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ''."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def without_nan(value):
    """A copy of a JSON-like value with NaN as None (null), since NaN is not valid JSON."""
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


DEFINITIONS = {
    "retain_X": "among the shared noises whose source sample shows X, the fraction whose sample shows X too",
    "presence_X": "fraction of all samples showing X",
    "style_rate": "fraction of samples the classifier reads as portraits",
    "fd_full / fd_limited": "Fréchet distance of realism-net features to held-out full / limited target renders",
    "sdedit_keep_A": "fraction of translated photos whose classifier label of attribute A equals the input's",
    "sdedit_retain_X": "among input photos showing X, the fraction whose translation shows X",
}


def summarize(metric_dicts: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """{metric: {"mean", "sd", "n"}} over seeds (sd: sample standard deviation, NaN for one seed)."""
    out = {}
    for name in metric_dicts[0]:
        values = np.array([m[name] for m in metric_dicts], dtype=np.float64)
        values = values[~np.isnan(values)]
        out[name] = {"mean": float(values.mean()) if len(values) else math.nan,
                     "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan, "n": int(len(values))}
    return out


def reproduction_records(summary: dict, config: BenchmarkConfig, hardware_name: str) -> list[dict]:
    """The records ``book/tools/reproduction_table.py`` reads (copy records.json into results/)."""
    shown = ("retain_dark_skin", "retain_eyewear", "retain_expression", "style_rate", "fd_full", "fd_limited",
             "sdedit_keep_mean")
    model_names = {"scratch": "Scratch", "naive": "Naive Fine-Tune"}
    return [{"paper_item": "SynthFaces", "dataset": "SynthFaces", "task": None,
             "model": model_names.get(label, label), "mode": config.name, "hardware": hardware_name,
             "chapter": "sdft-lite demo / synthfaces benchmark",
             "metrics": {m: round(stats[m]["mean"], 4) for m in shown if m in stats and stats[m]["n"]},
             "notes": f"{len(config.seeds)} seed(s), {config.num_noises} shared noises, {config.sample_steps}, "
                      f"{config.finetune.steps} steps × batch {config.finetune.batch_size}"
                      + (f", {config.finetune.target_smile_share:.0%} of the limited target smiling"
                         if config.finetune.target_smile_share else "")}
            for label, stats in summary.items() if label != SOURCE_LABEL]


# ---- table and figures ----------------------------------------------------------------------------------------

TABLE_COLUMNS = (("retain_dark_skin", "keep dark skin"), ("retain_eyewear", "keep eyewear"),
                 ("retain_expression", "keep smile"), ("style_rate", "portrait style"), ("fd_full", "FD full"),
                 ("fd_limited", "FD limited"), ("sdedit_keep_mean", "SDEdit keeps"),
                 ("sdedit_style_rate", "SDEdit style"))


def format_cell(stats: dict | None) -> str:
    if not stats or not stats["n"]:
        return "—"
    mean, sd = stats["mean"], stats["sd"]
    text = f"{mean:.3g}" if abs(mean) >= 10 else f"{mean:.2f}"
    return text if math.isnan(sd) else f"{text} ± {sd:.2g}"


def format_table(summary: dict) -> str:
    """A plain-text table: one row per model, mean ± sd over seeds."""
    header = ["model"] + [title for _, title in TABLE_COLUMNS]
    rows = [[label] + [format_cell(stats.get(key)) for key, _ in TABLE_COLUMNS] for label, stats in summary.items()]
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in [header] + rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


CLEAR_MARGIN = 0.10   # mean retention gap (SDFT − naive) called "clear"


def retention_standard_error(stats: dict, source: dict, num_noises: int) -> float:
    """Binomial standard error of a model's mean retention over the three absent attributes, from one seed: each
    retention is a fraction of the n_X shared noises whose source sample shows X."""
    variances = []
    for a in ABSENT:
        p, n = stats[f"retain_{a.key}"]["mean"], source[f"presence_{a.key}"]["mean"] * num_noises
        variances.append(p * (1 - p) / n if n >= 1 and not math.isnan(p) else 0.0)
    return math.sqrt(sum(variances)) / len(ABSENT)


def retention_gap(stats: dict, naive: dict, source: dict | None, num_noises: int) -> tuple[float, float, str]:
    """(SDFT − naive mean retention, its standard error, what the error is): over seeds when there are several,
    else the binomial error over the shared noises."""
    gap = stats["retain_mean"]["mean"] - naive["retain_mean"]["mean"]
    seeds = stats["retain_mean"]["n"]
    if seeds > 1 and naive["retain_mean"]["n"] > 1:
        se = math.sqrt(stats["retain_mean"]["sd"] ** 2 / seeds + naive["retain_mean"]["sd"] ** 2 / naive["retain_mean"]["n"])
        return gap, se, f"standard error over {seeds} seeds"
    if source is None:
        return gap, math.nan, "one seed, no spread"
    se = math.hypot(retention_standard_error(stats, source, num_noises),
                    retention_standard_error(naive, source, num_noises))
    return gap, se, f"one seed; binomial standard error over {num_noises} shared noises"


def verdict(summary: dict, num_noises: int = 0) -> list[str]:
    """One line per SDFT model of the λ sweep: how much more of the absent attributes it kept than naive, with the
    spread (over seeds, or binomial over the shared noises for one seed)."""
    if "naive" not in summary:
        return []
    naive, source, lines = summary["naive"], summary.get(SOURCE_LABEL), []
    for label, stats in summary.items():
        if not label.startswith("SDFT") or "," in label:
            continue
        gap, se, spread = retention_gap(stats, naive, source if num_noises else None, num_noises)
        parts = ", ".join(f"{a.key.replace('_', ' ')} {stats[f'retain_{a.key}']['mean']:.2f} vs "
                          f"{naive[f'retain_{a.key}']['mean']:.2f}" for a in ABSENT)
        clear = gap >= CLEAR_MARGIN and (math.isnan(se) or gap > 2 * se)
        gap_text = f"gap {gap:+.2f}" + ("" if math.isnan(se) else f" ± {se:.2f}")
        judged = (f"clearly more ({gap_text}; ≥ {CLEAR_MARGIN} and > 2 standard errors)" if clear else
                  f"NOT clearly more ({gap_text}): raise λ or fine-tune longer")
        lines.append(f"{label} kept {judged} of the attributes the target lacks than naive fine-tuning "
                     f"({parts}; {spread}), at a portrait-style rate of {stats['style_rate']['mean']:.2f} vs "
                     f"{naive['style_rate']['mean']:.2f}.")
    return lines


def report(result: dict) -> str:
    """What the demo and the CLI print: the table, the verdict, where the files are, the wall time."""
    files, wall = result["files"], result["wall_seconds"]["total"]
    lines = [format_table(result["summary"]), "", *verdict(result["summary"], result["config"]["num_noises"]), "",
             f"grid (rows = same noise):  {files['grid']}", f"SDEdit grid:               {files['sdedit_grid']}",
             f"frontier plot:             {files['frontier']}", f"every number:              {files['results']}",
             f"records for the book:      {files['records']}",
             f"wall time {wall:.0f} s ({wall / 60:.1f} min), CPU time {result['cpu_seconds']:.0f} s, on "
             f"{result['hardware']} {result['cpu_model']}, {result['torch_threads']} torch thread(s)"]
    load = result["load_average"][0]
    if load > 1.5 * (os.cpu_count() or 1):
        lines.append(f"note: the machine was busy (1-min load average {load:.1f} on {os.cpu_count()} cores), "
                     f"so this wall time is longer than on an idle machine")
    return "\n".join(lines)


def frontier_figure(summary: dict, config: BenchmarkConfig):
    """Mean retention vs realism (FD to the full target) and vs the portrait-style rate; the λ sweep as a line."""
    panels = {"fd_full": "realism: FD to held-out full portraits (log, lower = better)",
              "style_rate": "portrait-style rate"}
    def sd(stats: dict) -> float:   # a summary read back from JSON has null where one value had no spread
        return float("nan") if stats["sd"] is None else stats["sd"]
    points = {key: {label: (s[key]["mean"], s["retain_mean"]["mean"], sd(s[key]), sd(s["retain_mean"]))
                    for label, s in summary.items()} for key in panels}
    colours = {label: "tab:green" if label.startswith("SDFT") else "tab:red" if label == "naive"
               else "tab:gray" if label == SOURCE_LABEL else "tab:purple" for label in summary}
    seeds = f"{len(config.seeds)} seed{'s' if len(config.seeds) > 1 else ''}"
    return figures.frontier(points, panels, "retention of absent attributes (mean of 3)",
                            f"SynthFaces: keeping what the target lacks vs adopting the target ({seeds}, "
                            f"{config.num_noises} shared noises, {config.sample_steps})", colours,
                            line=[sdft_label(lam) for lam in sorted(config.lams)], log_x=("fd_full",))
