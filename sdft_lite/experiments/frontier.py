"""SDFT among its rivals on SynthFaces: every method over its one knob, the same budget, the same noises, one table.

A *method* is a label, the name of its knob and a function from a knob value to the TrainConfig of a run (with the
benchmark's fine-tuning budget); :data:`METHODS` lists what a practitioner would try instead of SDFT (naive
fine-tuning, LoRA, and the regularisers of ``sdft_lite.rivals``: DreamBooth's prior preservation, L2-SP, EWC and
DDPM-PA's pairwise similarity) beside SDFT itself. Every model is sampled from the benchmark's shared noises and measured
four ways:

- what it kept: retention of the attributes the target lacks (``benchmark.sample_metrics``), portrait-style rate;
- realism: Fréchet distance of the realism net's features to held-out full-target portraits;
- diversity: intra-cluster distance (Ojha et al. 2021) around ``num_centres`` training images, with the
  SynthFaces realism net's feature maps standing in for LPIPS (named as such: ``metrics.diversity``);
- memorisation: the share of samples that are near-duplicates of a training image (``metrics.memorisation``:
  nearest / second-nearest distance < 1/3, Gu et al. 2023), under the same distance and pixel ℓ2.

    result = run_frontier(FrontierConfig.quick(), "runs/frontier")   # frontier.json, frontier.png
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .. import figures
from ..adapters import LoRAConfig
from ..config import hardware, pick_device
from ..metrics.diversity import intra_cluster_distance
from ..metrics.memorisation import memorisation_report
from ..rivals import RivalConfig
from ..sdft import SDFTConfig
from ..synthfaces.realism import realism_distance
from ..train import TrainConfig
from .benchmark import ABSENT, BenchmarkConfig, Evaluator, Instruments, prepare_data, summarize, without_nan
from .zoo import finetune_many, finetuned, limited_target, source_model


@dataclass(frozen=True)
class Method:
    """A fine-tuning method with its one knob: ``build(base, value)`` is the run for knob ``value``."""

    label: str
    knob: str
    values: tuple[float, ...]
    build: Callable[[TrainConfig, float], TrainConfig] = field(compare=False)

    def runs(self, base: TrainConfig) -> list[tuple[str, float, TrainConfig]]:
        return [(self.label, value, self.build(base, value)) for value in self.values]


def naive(base: TrainConfig, _: float) -> TrainConfig:
    return dataclasses.replace(base, mode="naive", loss=SDFTConfig.naive())


def sdft(base: TrainConfig, lam: float) -> TrainConfig:
    return dataclasses.replace(base, mode="sdft", loss=SDFTConfig.symmetric(lam))


def lora(base: TrainConfig, rank: float) -> TrainConfig:
    """LoRA only (Hu et al. 2022): the naive loss on rank-r adapters of every conv, attention and linear layer."""
    return dataclasses.replace(naive(base, 0), lora=LoRAConfig(rank=int(rank)))


def sdft_lora(base: TrainConfig, lam: float) -> TrainConfig:
    """SDFT's loss on rank-4 adapters."""
    return dataclasses.replace(sdft(base, lam), lora=LoRAConfig(rank=4))


def rival(method: str) -> Callable[[TrainConfig, float], TrainConfig]:
    """A regulariser of ``sdft_lite.rivals`` on top of naive fine-tuning, its weight the knob."""
    def build(base: TrainConfig, weight: float) -> TrainConfig:
        return dataclasses.replace(naive(base, 0), rival=RivalConfig(method=method, weight=weight))
    return build


# knob ranges: a decade apart around where each method starts to act on this model (EWC: the source's diagonal
# Fisher averages 4e-7, so λ·F is of order 0.1–10 at λ = 1e5–1e7)
METHODS: tuple[Method, ...] = (
    Method("naive", "-", (0.0,), naive),
    Method("SDFT", "λ", (0.1, 1.0, 10.0), sdft),
    Method("LoRA", "rank", (1.0, 4.0, 16.0), lora),
    Method("SDFT + LoRA r4", "λ", (1.0, 10.0), sdft_lora),
    Method("prior preservation", "w", (0.3, 1.0, 3.0), rival("prior")),
    Method("L2-SP", "α", (1.0, 10.0, 100.0), rival("l2sp")),
    Method("EWC", "λ", (1e5, 1e6, 1e7), rival("ewc")),
    Method("DDPM-PA pairwise", "weight", (0.3, 3.0, 30.0), rival("pairwise")),
)

# the quick frontier's one value per method: the value that acts at the full budget (seed 0 of the GPU run),
# λ = 3 for SDFT as in the quick benchmark; DDPM-PA's pairwise loss is left to the GPU run
QUICK_VALUES = {"naive": 0.0, "SDFT": 3.0, "LoRA": 4.0, "SDFT + LoRA r4": 10.0, "prior preservation": 1.0,
                "L2-SP": 1.0, "EWC": 1e6}


@dataclass(frozen=True)
class FrontierConfig:
    """Which methods, which seeds, and the benchmark whose budget and evaluation every run shares."""

    name: str = "custom"
    benchmark: BenchmarkConfig = BenchmarkConfig.full(seeds=(0, 1, 2))
    methods: tuple[Method, ...] = METHODS
    num_centres: int = 10               # training images that are cluster centres (the few-shot papers' 10)

    @classmethod
    def quick(cls, **changes) -> "FrontierConfig":
        """The chapters' CPU frontier: one seed, the chapters' quick budget (``TrainConfig.synthfaces_quick``), one
        knob value per method (:data:`QUICK_VALUES`); the package ships every one of these models, so on a CPU
        the run only samples and measures."""
        methods = tuple(dataclasses.replace(m, values=(QUICK_VALUES[m.label],)) for m in METHODS
                        if m.label in QUICK_VALUES)
        benchmark = BenchmarkConfig.quick(seeds=(0,), finetune=TrainConfig.synthfaces_quick())
        return cls(**{"name": "quick", "benchmark": benchmark, "methods": methods, **changes})

    @classmethod
    def full(cls, **changes) -> "FrontierConfig":
        """The GPU frontier: every method over its knob, three seeds, the full benchmark's budget and noises."""
        return cls(**{"name": "full", **changes})

    def runs(self) -> list[tuple[str, float, int, TrainConfig]]:
        """(method, knob value, seed, config) of every run."""
        out = []
        for seed in self.benchmark.seeds:
            base = dataclasses.replace(self.benchmark.finetune, seed=seed)
            out += [(label, value, seed, config) for method in self.methods
                    for label, value, config in method.runs(base)]
        return out


def set_metrics(samples: torch.Tensor, train: torch.Tensor, centres: torch.Tensor, distance) -> dict[str, float]:
    """Diversity around the centres and near-duplicate shares against the whole training set."""
    diversity = intra_cluster_distance(samples, centres, distance)
    report = memorisation_report(samples, train, distance)
    shares = {name: block.share for name, block in report.by_distance.items()}
    return {"intra_cluster": diversity.value, "near_duplicates": shares[distance.name],
            "near_duplicates_pixel": shares["pixel l2"] if "pixel l2" in shares else math.nan}


def run_frontier(config: FrontierConfig, out_dir: str | Path, device: str | None = None, workers: int = 1,
                 log: Callable[[str], None] | None = print) -> dict:
    """Fine-tune (or load) every run, evaluate each from the shared noises, write frontier.json and frontier.png."""
    log = log or (lambda message: None)
    started = time.perf_counter()
    out_dir, device = Path(out_dir), pick_device(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = config.runs()
    if workers > 1:
        finetune_many([run[-1] for run in runs], workers=workers, device=str(device), log=log)
    source = source_model()
    size = source.config.image_size
    data = prepare_data(config.benchmark, out_dir / "data", size)
    evaluator = Evaluator(config.benchmark, data, Instruments.load(data, device), device, size)
    finetune = config.benchmark.finetune
    train = limited_target(size, finetune.num_images, smile_share=finetune.target_smile_share).images
    train = train.float() / 127.5 - 1
    centres = train[:config.num_centres]
    distance = realism_distance(device=device)
    source_metrics, source_samples, _ = evaluator.evaluate(source, translate=False)
    source_metrics.update(set_metrics(source_samples, train, centres, distance))
    header = {"experiment": "SDFT among its rivals", "config": {"name": config.name,
              "benchmark": config.benchmark.to_dict(), "num_centres": config.num_centres,
              "methods": [{"label": m.label, "knob": m.knob, "values": list(m.values)} for m in config.methods]},
              "distance": distance.name, "hardware": hardware(), "source": source_metrics}
    records = []
    for label, value, seed, run in runs:
        timer = time.perf_counter()
        metrics, samples, _ = evaluator.evaluate(finetuned(run, device=str(device)), translate=False)
        metrics.update(set_metrics(samples, train, centres, distance))
        records.append({"method": label, "knob": value, "seed": seed, "metrics": metrics})
        write_result(out_dir, {**header, "records": records, "summary": summarize_records(records),
                               "wall_seconds": round(time.perf_counter() - started, 1)})   # a cut run keeps these
        log(f"{label} {value:g} seed {seed}: retain {metrics['retain_mean']:.2f}, FD {metrics['fd_full']:.3g}, "
            f"diversity {metrics['intra_cluster']:.3f} ({time.perf_counter() - timer:.0f} s)")
    result = {**header, "records": records, "summary": summarize_records(records),
              "wall_seconds": round(time.perf_counter() - started, 1)}
    write_result(out_dir, result)
    figures.save(frontier_figure(result), out_dir / "frontier.png")
    return result


def write_result(out_dir: Path, result: dict) -> Path:
    """frontier.json (NaN as null)."""
    path = out_dir / "frontier.json"
    path.write_text(json.dumps(without_nan(result), indent=2, ensure_ascii=False))
    return path


def summarize_records(records: list[dict]) -> dict:
    """{"method knob": {metric: {"mean", "sd", "n"}}} over seeds, in the order the runs came."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(f"{r['method']} {r['knob']:g}", []).append(r["metrics"])
    return {label: summarize(metrics) for label, metrics in groups.items()}


def merge_results(parts: list[dict]) -> dict:
    """One result from runs made in parts (e.g. one seed per GPU call): records joined, summary recomputed."""
    records = [r for part in parts for r in part["records"]]
    merged = {**parts[0], "records": records, "summary": summarize_records(records),
              "wall_seconds": round(sum(part["wall_seconds"] for part in parts), 1)}
    merged["config"] = {**parts[0]["config"], "seeds": sorted({r["seed"] for r in records})}
    merged["parts"] = [{"seeds": sorted({r["seed"] for r in part["records"]}), "wall_seconds": part["wall_seconds"],
                        **{k: part[k] for k in ("command", "commit", "hardware") if k in part}} for part in parts]
    return merged


def frontier_figure(result: dict):
    """Retention of the absent attributes against adaptation (portrait style), realism and diversity, one marker
    per method and knob value, mean ± sd over seeds."""
    panels = {"style_rate": "adaptation: portrait-style rate of the samples (higher = adapted)",
              "fd_full": "realism: FD to full portraits (log, lower = better)",
              "intra_cluster": "diversity: intra-cluster distance (higher = more diverse)"}
    palette = ("tab:red", "tab:green", "tab:blue", "tab:olive", "tab:purple", "tab:orange", "tab:brown", "tab:pink")
    methods = list(dict.fromkeys(r["method"] for r in result["records"]))
    colours = {label: palette[methods.index(label.rsplit(" ", 1)[0]) % len(palette)] for label in result["summary"]}
    knobs = {m["label"]: m["knob"] for m in result["config"]["methods"]}
    groups = {}
    for label in result["summary"]:
        method, value = label.rsplit(" ", 1)
        knob = knobs.get(method, "-")
        groups[label] = (method if knob == "-" else f"{method} ({knob})", "" if knob == "-" else value)
    def value(x):   # a result read back from JSON has null where the run had NaN (one seed: no sd)
        return math.nan if x is None else x
    points = {key: {label: tuple(map(value, (s[key]["mean"], s["retain_mean"]["mean"], s[key]["sd"],
                                            s["retain_mean"]["sd"])))
                    for label, s in result["summary"].items()} for key in panels}
    seeds = sorted({r["seed"] for r in result["records"]})
    which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}; mean ± sd"
    return figures.frontier(points, panels, "retention of absent attributes (mean of 3)",
                            f"SynthFaces: SDFT and its rivals ({which})",
                            colours, log_x=("fd_full",), groups=groups)


def format_frontier(result: dict, columns: list[str] | None = None) -> str:
    """A plain-text table: one row per method and knob value, mean ± sd over seeds (default: every measurement)."""
    columns = columns or [*(f"retain_{a.key}" for a in ABSENT), "retain_mean", "style_rate", "fd_full",
                          "intra_cluster", "near_duplicates"]
    lines = ["method".ljust(22) + "".join(c.replace("retain_", "keep ")[:14].rjust(15) for c in columns)]
    for label, stats in result["summary"].items():
        cells = [f"{stats[c]['mean']:.3g}" + (f"±{stats[c]['sd']:.2g}" if stats[c]["n"] > 1 else "")
                 for c in columns]
        lines.append(label.ljust(22) + "".join(cell.rjust(15) for cell in cells))
    return "\n".join(lines)

