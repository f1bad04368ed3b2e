"""``sdft-lite evaluate``: the paper's metrics on folders of images, printed as a table and saved as JSON.

  sdft-lite evaluate --samples DIR --ref DIR [--pairs DIR] [--metrics fid kid lpips psnr ssim sdir id]
                     [--extractor NAME] [--out results.json]

Inputs
  --samples DIR   generated images; FID and KID×10³ compare them with --ref (SDFT: 256-px training set)
  --ref DIR       reference images (both folders are read recursively, as clean-fid does)
  --pairs DIR     an image-to-image result: DIR/input/NAME (source) and DIR/output/NAME (translated or edited),
                  matched by file name. LPIPS, PSNR, SSIM and ID compare output with input; S_dir scores the
                  edit input -> output against --source-text -> --target-text.

Every number is printed with the network that produced it and whether it is comparable with the paper's.
A metric whose weights are absent is reported as unavailable with the file, its source and its destination
(exit status 2); the others are still computed. FID/KID fall back to another extractor only when --extractor
names one, and the table then marks them as not comparable.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from sdft_lite.config import pick_device
from sdft_lite.metrics import clip_direction, fid, fidelity, identity, perceptual
from sdft_lite.metrics.images import iter_pair_batches
from sdft_lite.metrics.weights import MissingWeightsError

UNPAIRED_METRICS = ("fid", "kid")
PAIRED_METRICS = ("lpips", "psnr", "ssim", "sdir", "id")
ALL_METRICS = UNPAIRED_METRICS + PAIRED_METRICS
LABELS = {"fid": "FID", "kid": "KID×10³", "lpips": "LPIPS", "psnr": "PSNR (dB)", "ssim": "SSIM",
          "sdir": "S_dir", "id": "ID (ArcFace)"}


@dataclass(frozen=True)
class Row:
    """One line of the table: a metric's value, the network behind it and whether the paper's number compares."""

    metric: str
    value: float
    model: str
    n: str
    vs_paper: str  # "yes", "no" or "unverified"
    details: dict = field(default_factory=dict)


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
            "metrics": {r.metric: {"label": LABELS[r.metric], "value": number(r.value), "model": r.model,
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
        # The paper's PSNR/SSIM came from [-1,1] tensors fed to a [0,1] formula (method-spec §7.4).
        vs_paper = "yes" if settings.authors_scaling else "no"
        return Row(metric, mean, f"luma Y, inputs scaled {scaling}", n, vs_paper, {"scaling": scaling})
    if metric == "sdir":
        encoder = models["sdir"].name
        return Row(metric, mean, encoder, n, "unverified",
                   {"source_text": settings.source_text, "target_text": settings.target_text})
    return Row(metric, mean, getattr(models["id"], "sdft_name", "arcface-ir-se50"), n, "unverified")


# ---------------------------------------------------------------------------------------------------------------
# The table and the command


def format_table(report: Report) -> str:
    """The rows as an aligned table, with footnotes on comparability and the unavailable metrics."""
    header = ("metric", "value", "network / setting", "n", "vs paper")
    lines = [(LABELS[r.metric], f"{r.value:.4f}", r.model, r.n, r.vs_paper) for r in report.rows]
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
    text += [f"note: {n}" for n in notes]
    text += [f"{LABELS[m]}: unavailable\n  {msg}" for m, msg in report.unavailable.items()]
    return "\n".join(text)


def _default_metrics(samples_dir, ref_dir, pairs_dir) -> tuple[str, ...]:
    unpaired = UNPAIRED_METRICS if samples_dir and ref_dir else ()
    paired = ("lpips", "psnr", "ssim") if pairs_dir else ()
    return unpaired + paired


def evaluate(samples_dir: str | Path | None = None, ref_dir: str | Path | None = None,
             pairs_dir: str | Path | None = None, metrics: Sequence[str] | None = None,
             extractor: str | None = None, out_json: str | Path | None = None, *,
             paired: PairedSettings | None = None, device: str | None = None, batch_size: int = 32,
             print_table: bool = True) -> Report:
    """Compute ``metrics`` (default: FID, KID with --samples/--ref; LPIPS, PSNR, SSIM with --pairs)."""
    metrics = tuple(metrics) if metrics else _default_metrics(samples_dir, ref_dir, pairs_dir)
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {ALL_METRICS}")
    paired = paired or PairedSettings()
    wanted_unpaired = [m for m in metrics if m in UNPAIRED_METRICS]
    wanted_paired = [m for m in metrics if m in PAIRED_METRICS]
    if wanted_unpaired and not (samples_dir and ref_dir):
        raise ValueError("FID/KID need both --samples and --ref")
    if wanted_paired and not pairs_dir:
        raise ValueError(f"{', '.join(wanted_paired)} need --pairs DIR (with input/ and output/ subfolders)")
    if "sdir" in wanted_paired and not (paired.source_text and paired.target_text):
        raise ValueError("S_dir needs --source-text and --target-text (e.g. 'face' 'smiling face')")

    torch_device = pick_device(device)
    rows, unavailable = [], {}
    if wanted_unpaired:
        new_rows, missing = _fid_kid_rows(Path(samples_dir), Path(ref_dir), wanted_unpaired, extractor,
                                          torch_device, batch_size)
        rows, unavailable = rows + new_rows, {**unavailable, **missing}
    if wanted_paired:
        new_rows, missing = _paired_rows(Path(pairs_dir), wanted_paired, paired, torch_device, batch_size)
        rows, unavailable = rows + new_rows, {**unavailable, **missing}

    inputs = {"samples": str(samples_dir) if samples_dir else None, "ref": str(ref_dir) if ref_dir else None,
              "pairs": str(pairs_dir) if pairs_dir else None}
    report = Report(rows, unavailable, inputs)
    if print_table:
        print(format_table(report))
    if out_json:
        Path(out_json).write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
    return report
