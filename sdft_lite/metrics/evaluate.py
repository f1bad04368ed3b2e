"""``sdft-lite evaluate``: the paper's metrics on folders of images, printed as a table and saved as JSON.

  sdft-lite evaluate --samples DIR --ref DIR [--pairs DIR] [--train DIR]
                     [--metrics fid kid lpips psnr ssim sdir id diversity memorisation]
                     [--extractor NAME] [--out results.json]

Inputs
  --samples DIR   generated images; FID and KID×10³ compare them with --ref (SDFT: 256-px training set)
  --ref DIR       reference images (both folders are read recursively, as clean-fid does)
  --pairs DIR     an image-to-image result: DIR/input/NAME (source) and DIR/output/NAME (translated or edited),
                  matched by file name. LPIPS, PSNR, SSIM and ID compare output with input; S_dir scores the
                  edit input -> output against --source-text -> --target-text.
  --train DIR     the training images of the model behind --samples (read with training's preprocessing, at the
                  samples' size). "diversity" is intra-cluster LPIPS (Ojha et al. 2021): samples clustered to
                  their nearest training image, mean pairwise distance inside the clusters. "memorisation" gives
                  each sample's nearest training image and the share of near-duplicates (nearest / second-nearest
                  distance < 1/3, Gu et al. 2023), with the pluggable distance and with pixel L2.
                  --distance auto uses LPIPS when its trunk file is present and otherwise the SynthFaces realism
                  net's features, whose rows are then named after them, never LPIPS.

Every number is printed with the network that produced it and whether it is comparable with the paper's.
A metric whose weights are absent is reported as unavailable with the file, its source and its destination
(exit status 2); the others are still computed. FID/KID fall back to another extractor only when --extractor
names one, and the table then marks them as not comparable.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from sdft_lite.config import pick_device
from sdft_lite.metrics import clip_direction, distances, diversity, fid, fidelity, identity, memorisation, perceptual
from sdft_lite.metrics.images import iter_pair_batches, list_images, load_images, load_images_at
from sdft_lite.metrics.weights import MissingWeightsError

UNPAIRED_METRICS = ("fid", "kid")
PAIRED_METRICS = ("lpips", "psnr", "ssim", "sdir", "id")
SET_METRICS = ("diversity", "memorisation")  # samples against their training images (--train)
ALL_METRICS = UNPAIRED_METRICS + PAIRED_METRICS + SET_METRICS
LABELS = {"fid": "FID", "kid": "KID×10³", "lpips": "LPIPS", "psnr": "PSNR (dB)", "ssim": "SSIM",
          "sdir": "S_dir", "id": "ID (ArcFace)", "diversity": "intra-cluster LPIPS",
          "memorisation": "near-duplicates", "memorisation_l2": "near-duplicates (pixel L2)"}
DISTANCES = ("auto", "lpips", "features")


@dataclass(frozen=True)
class Row:
    """One line of the table: a metric's value, the network behind it and whether the paper's number compares."""

    metric: str
    value: float
    model: str
    n: str
    vs_paper: str  # "yes", "no", "unverified" or "n/a" (the paper reports no such number)
    details: dict = field(default_factory=dict)
    label: str = ""  # the table's name when it depends on the distance (default: LABELS[metric])

    @property
    def title(self) -> str:
        return self.label or LABELS[self.metric]


@dataclass
class Report:
    rows: list[Row]
    unavailable: dict[str, str]
    inputs: dict[str, str | None]

    def to_json(self) -> dict:
        def number(v: float) -> float | str:
            return v if math.isfinite(v) else str(v)

        return {
            "inputs": self.inputs,
            "metrics": {r.metric: {"label": r.title, "value": number(r.value), "model": r.model,
                                   "n": r.n, "comparable_with_paper": r.vs_paper, "details": r.details}
                        for r in self.rows},
            "unavailable": self.unavailable,
        }


# ---------------------------------------------------------------------------------------------------------------
# Unpaired metrics: FID and KID×10³


def _fid_kid_rows(samples_dir: Path, ref_dir: Path, wanted: Sequence[str], extractor: str | None,
                  device: torch.device, batch_size: int) -> tuple[list[Row], dict[str, str]]:
    name = extractor or fid.PAPER_EXTRACTOR
    try:
        feats1, feats2 = fid.pair_features(samples_dir, ref_dir, name, device, batch_size)
    except MissingWeightsError as error:
        hint = ("" if extractor else
                "\n  To compute FID/KID anyway with a named alternative extractor (numbers NOT comparable with the "
                f"paper's), pass --extractor NAME; registered: {', '.join(fid.available_extractors())}.")
        return [], {m: str(error) + hint for m in wanted}
    n1, n2 = len(feats1), len(feats2)
    n, vs_paper = f"{n1} vs {n2}", "yes" if name == fid.PAPER_EXTRACTOR else "no"
    rows, unavailable = [], {}
    if "fid" in wanted:
        try:
            result = fid.fid_result(feats1, feats2, name)
            rows.append(Row("fid", result.fid, name, n, vs_paper, asdict(result)))
        except ValueError as error:  # too few images for the feature dimension
            unavailable["fid"] = str(error)
    if "kid" in wanted:
        result = fid.kid_result(feats1, feats2, name)
        rows.append(Row("kid", result.kid_x1e3, name, n, vs_paper, asdict(result)))
    return rows, unavailable


# ---------------------------------------------------------------------------------------------------------------
# Paired metrics: LPIPS, PSNR, SSIM, S_dir, ID — one pass over the pairs


@dataclass
class PairedSettings:
    lpips_net: str = "vgg"
    lpips_backbone: str = "imagenet"
    authors_scaling: bool = False
    source_text: str | None = None
    target_text: str | None = None
    clip_model: str = "ViT-B/32"
    clip_weights: str | None = None
    arcface_weights: str | None = None


def _build_paired_models(wanted: Sequence[str], settings: PairedSettings,
                         device: torch.device) -> tuple[dict, dict[str, str]]:
    """The networks the wanted pair metrics need, and the metrics that cannot run (with why)."""
    models, unavailable = {}, {}
    builders = {
        "lpips": lambda: perceptual.build_lpips(settings.lpips_net, settings.lpips_backbone, device),
        "sdir": lambda: clip_direction.ClipEncoders.from_file(settings.clip_model, settings.clip_weights, device),
        "id": lambda: identity.load_arcface(settings.arcface_weights, device),
    }
    for metric in wanted:
        if metric in builders:
            try:
                models[metric] = builders[metric]()
            except MissingWeightsError as error:
                unavailable[metric] = str(error)
    return models, unavailable


def _paired_rows(pairs_dir: Path, wanted: Sequence[str], settings: PairedSettings, device: torch.device,
                 batch_size: int) -> tuple[list[Row], dict[str, str]]:
    models, unavailable = _build_paired_models(wanted, settings, device)
    active = [m for m in wanted if m not in unavailable]
    delta_t = None
    if "sdir" in active:
        delta_t = clip_direction.text_direction(models["sdir"].encode_text, settings.source_text,
                                                settings.target_text)
    scores: dict[str, list[torch.Tensor]] = {m: [] for m in active}
    for x_in, x_out in iter_pair_batches(pairs_dir, batch_size):
        if "lpips" in active:
            scores["lpips"].append(perceptual.lpips_distances(models["lpips"], x_out, x_in).double())
        if "psnr" in active:
            scores["psnr"].append(fidelity.psnr(x_out, x_in, settings.authors_scaling))
        if "ssim" in active:
            scores["ssim"].append(fidelity.ssim(x_out, x_in, settings.authors_scaling))
        if "sdir" in active:
            scores["sdir"].append(clip_direction.sdir_scores(models["sdir"], x_in, x_out, delta_t))
        if "id" in active:
            scores["id"].append(identity.identity_similarities(models["id"], x_in, x_out))
    rows = [_paired_row(m, torch.cat(scores[m]), models, settings) for m in active]
    return rows, unavailable


def _paired_row(metric: str, values: torch.Tensor, models: dict, settings: PairedSettings) -> Row:
    n = f"{len(values)} pairs"
    mean = float(values.mean()) if torch.isfinite(values).all() else math.inf
    if metric == "lpips":
        result = perceptual.LPIPSResult(mean, settings.lpips_net, settings.lpips_backbone, len(values))
        vs_paper = "yes" if result.calibrated and result.net == "vgg" else "no"
        return Row(metric, mean, result.model_name, n, vs_paper, asdict(result))
    if metric in ("psnr", "ssim"):
        scaling = "[-1,1] (authors' notebooks)" if settings.authors_scaling else "[0,1] (correct)"
        # The paper's PSNR/SSIM came from [-1,1] tensors fed to a [0,1] formula (the authors' evaluation notebooks).
        vs_paper = "yes" if settings.authors_scaling else "no"
        return Row(metric, mean, f"luma Y, inputs scaled {scaling}", n, vs_paper, {"scaling": scaling})
    if metric == "sdir":
        encoder = models["sdir"].name
        return Row(metric, mean, encoder, n, "unverified",
                   {"source_text": settings.source_text, "target_text": settings.target_text})
    return Row(metric, mean, getattr(models["id"], "sdft_name", "arcface-ir-se50"), n, "unverified")


# ---------------------------------------------------------------------------------------------------------------
# Set metrics: diversity and memorisation of the samples against the training images


@dataclass
class SetSettings:
    """How "diversity" and "memorisation" are measured. ``distance``: "auto" (LPIPS when its trunk file is
    present, else ``features``), "lpips" or "features"; ``features(device, metric)`` builds the stand-in feature
    distance (the command line passes the SynthFaces realism net); LPIPS's net and trunk come from PairedSettings."""

    distance: str = "auto"
    features: Callable[[torch.device, str], distances.Distance] | None = None
    feature_metric: str = "cosine"
    max_per_cluster: int | None = diversity.PAPER_CLUSTER_SIZE
    near_duplicate_ratio: float = memorisation.NEAR_DUPLICATE_RATIO
    seed: int = 0
    bins: int = memorisation.HISTOGRAM_BINS
    histogram: str | Path | None = None  # write the memorisation figure here


def _set_distance(settings: SetSettings, paired: PairedSettings, device: torch.device,
                  batch_size: int) -> distances.Distance:
    """LPIPS, or the named feature distance standing in for it (MissingWeightsError when neither can be built)."""
    missing = None
    if settings.distance in ("auto", "lpips"):
        try:
            return distances.lpips_distance(net=paired.lpips_net, backbone=paired.lpips_backbone, device=device,
                                            batch_size=batch_size)
        except MissingWeightsError as error:
            if settings.distance == "lpips" or settings.features is None:
                raise
            missing = error
    distance = settings.features(device, settings.feature_metric)
    note = (f"stands in for LPIPS, whose trunk is missing ({missing.what})" if missing
            else "was chosen instead of LPIPS (--distance features)")
    return replace(distance, note=note)


def _set_rows(samples_dir: Path, train_dir: Path, wanted: Sequence[str], settings: SetSettings,
              paired: PairedSettings, device: torch.device, batch_size: int) -> tuple[list[Row], dict[str, str]]:
    sample_paths, train_paths = list_images(samples_dir), list_images(train_dir)
    samples = load_images(sample_paths)
    if samples.shape[-1] != samples.shape[-2]:
        raise ValueError(f"{samples_dir}: diversity/memorisation need square samples, got {tuple(samples.shape[-2:])}")
    train = load_images_at(train_paths, samples.shape[-1])
    n = f"{len(samples)} samples, {len(train)} train"
    try:
        distance = _set_distance(settings, paired, device, batch_size)
    except MissingWeightsError as error:
        hint = ("\n  With --distance auto the SynthFaces realism net's features stand in (named as such); from "
                "Python, pass SetSettings(features=...), e.g. sdft_lite.synthfaces.realism_distance.")
        distance, unavailable = None, {m: str(error) + hint for m in wanted}
    else:
        unavailable = {}
    rows, sample_train = [], distance.matrix(samples, train) if distance else None
    if distance and "diversity" in wanted:
        result = diversity.intra_cluster_distance(samples, train, distance, settings.max_per_cluster,
                                                  settings.seed, sample_train)
        rows.append(Row("diversity", result.value, distance.name, n, "n/a", result.to_json(), result.label))
    if "memorisation" in wanted:
        names = ([p.relative_to(samples_dir).as_posix() for p in sample_paths],
                 [p.relative_to(train_dir).as_posix() for p in train_paths])
        report = memorisation.memorisation_report(samples, train, distance, settings.near_duplicate_ratio,
                                                  settings.bins, sample_train, *names)
        for name, block in report.by_distance.items():
            main = distance is not None and name == distance.name and distance.kind != "pixel"
            details = {**block.to_json(*names, settings.bins), "distance_note": distance.note if main else ""}
            label = f"near-duplicates ({distance.short})" if main else LABELS["memorisation_l2"]
            rows.append(Row("memorisation" if main else "memorisation_l2", block.share, name, n, "n/a", details,
                            label))
        if settings.histogram:
            from sdft_lite import figures
            figures.save(report.figure(), settings.histogram)
    return rows, unavailable


# ---------------------------------------------------------------------------------------------------------------
# The table and the command


def format_table(report: Report) -> str:
    """The rows as an aligned table, with footnotes on comparability and the unavailable metrics."""
    header = ("metric", "value", "network / setting", "n", "vs paper")
    lines = [(r.title, f"{r.value:.4f}", r.model, r.n, r.vs_paper) for r in report.rows]
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *lines]]
    notes = []
    extractors = {r.model for r in report.rows if r.metric in UNPAIRED_METRICS}
    if extractors - {fid.PAPER_EXTRACTOR}:
        notes.append(f"FID/KID from extractor {', '.join(sorted(extractors))}: NOT comparable with the paper's "
                     "Inception numbers, nor with FID/KID from any other extractor.")
    if any(r.metric in ("psnr", "ssim") and r.vs_paper == "no" for r in report.rows):
        notes.append("PSNR/SSIM on correctly scaled [0,1] luma; the paper fed [-1,1] tensors (PSNR ≈ 6 dB lower): "
                     "use --authors-scaling to reproduce that convention.")
    if any(r.vs_paper == "unverified" for r in report.rows):
        notes.append("S_dir / ID: which CLIP and ArcFace models SDFT used is UNVERIFIED.")
    stand_ins = {(r.model, r.details["distance_note"]) for r in report.rows
                 if r.metric in SET_METRICS and r.details.get("distance_note")}
    for model, why in sorted(stand_ins):
        notes.append(f"diversity / near-duplicates by {model}, which {why}: NOT LPIPS, comparable only with "
                     "numbers from the same distance.")
    if any(r.metric == "diversity" for r in report.rows):
        notes.append("intra-cluster: samples clustered to their nearest training image; clusters with fewer than 2 "
                     "samples are left out of the mean (Ojha et al. 2021).")
    thresholds = {r.details["ratio_threshold"] for r in report.rows if r.metric.startswith("memorisation")}
    for threshold in sorted(thresholds):
        notes.append(f"near-duplicates: share of samples whose nearest training image is < {threshold:.3g} times as "
                     "far as the second-nearest (Gu et al. 2023).")
    text += [f"note: {n}" for n in notes]
    text += [f"{LABELS[m]}: unavailable\n  {msg}" for m, msg in report.unavailable.items()]
    return "\n".join(text)


def _default_metrics(samples_dir, ref_dir, pairs_dir, train_dir) -> tuple[str, ...]:
    unpaired = UNPAIRED_METRICS if samples_dir and ref_dir else ()
    paired = ("lpips", "psnr", "ssim") if pairs_dir else ()
    sets = SET_METRICS if samples_dir and train_dir else ()
    return unpaired + paired + sets


def evaluate(samples_dir: str | Path | None = None, ref_dir: str | Path | None = None,
             pairs_dir: str | Path | None = None, metrics: Sequence[str] | None = None,
             extractor: str | None = None, out_json: str | Path | None = None, *,
             paired: PairedSettings | None = None, device: str | None = None, batch_size: int = 32,
             print_table: bool = True, train_dir: str | Path | None = None, sets: SetSettings | None = None) -> Report:
    """Compute ``metrics`` (default: FID, KID with --samples/--ref; LPIPS, PSNR, SSIM with --pairs; diversity and
    memorisation with --samples/--train)."""
    metrics = tuple(metrics) if metrics else _default_metrics(samples_dir, ref_dir, pairs_dir, train_dir)
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {ALL_METRICS}")
    paired, sets = paired or PairedSettings(), sets or SetSettings()
    wanted_unpaired = [m for m in metrics if m in UNPAIRED_METRICS]
    wanted_paired = [m for m in metrics if m in PAIRED_METRICS]
    wanted_sets = [m for m in metrics if m in SET_METRICS]
    if wanted_unpaired and not (samples_dir and ref_dir):
        raise ValueError("FID/KID need both --samples and --ref")
    if wanted_paired and not pairs_dir:
        raise ValueError(f"{', '.join(wanted_paired)} need --pairs DIR (with input/ and output/ subfolders)")
    if "sdir" in wanted_paired and not (paired.source_text and paired.target_text):
        raise ValueError("S_dir needs --source-text and --target-text (e.g. 'face' 'smiling face')")
    if wanted_sets and not (samples_dir and train_dir):
        raise ValueError(f"{', '.join(wanted_sets)} need --samples and --train (the model's training images)")
    if sets.distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got '{sets.distance}'")
    if wanted_sets and sets.distance == "features" and sets.features is None:
        raise ValueError("distance 'features' needs SetSettings.features (the command line uses the realism net)")

    torch_device = pick_device(device)
    rows, unavailable = [], {}
    if wanted_unpaired:
        new_rows, missing = _fid_kid_rows(Path(samples_dir), Path(ref_dir), wanted_unpaired, extractor,
                                          torch_device, batch_size)
        rows, unavailable = rows + new_rows, {**unavailable, **missing}
    if wanted_paired:
        new_rows, missing = _paired_rows(Path(pairs_dir), wanted_paired, paired, torch_device, batch_size)
        rows, unavailable = rows + new_rows, {**unavailable, **missing}
    if wanted_sets:
        new_rows, missing = _set_rows(Path(samples_dir), Path(train_dir), wanted_sets, sets, paired, torch_device,
                                      batch_size)
        rows, unavailable = rows + new_rows, {**unavailable, **missing}

    inputs = {"samples": str(samples_dir) if samples_dir else None, "ref": str(ref_dir) if ref_dir else None,
              "pairs": str(pairs_dir) if pairs_dir else None, "train": str(train_dir) if train_dir else None}
    report = Report(rows, unavailable, inputs)
    if print_table:
        print(format_table(report))
    if out_json:
        Path(out_json).write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
    return report
