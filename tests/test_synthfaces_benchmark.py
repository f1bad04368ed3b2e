"""The SynthFaces benchmark: retention is counted right on hand-made labels, the written limited target truly
lacks the excluded attributes, and a tiny configuration runs end to end and writes its JSON and figures."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from sdft_lite.synthfaces.attributes import FaceLabels
from sdft_lite.experiments.benchmark import (ABSENT, BenchmarkConfig, format_table, load_grid_images, retention,
                                            retention_gap, run_benchmark, sample_metrics, style_rate, summarize,
                                            verdict)
from sdft_lite.synthfaces.domains import DomainSpec, read_labels, write_domain
from sdft_lite.train import TrainConfig
from sdft_lite.weighting import Constant

DARK_SKIN, EYEWEAR, EXPRESSION = ABSENT


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


def labels(**columns) -> FaceLabels:
    n = len(next(iter(columns.values())))
    return FaceLabels(**{name: np.asarray(columns.get(name, [0] * n), dtype=np.int64)
                         for name in ("skin", "expression", "eyewear", "hair", "style")})


def test_retention_on_hand_made_labels():
    source = labels(skin=[0, 2, 3, 4, 1, 4], eyewear=[0, 1, 2, 0, 0, 2], style=[0] * 6)
    tuned = labels(skin=[2, 2, 0, 4, 4, 1], eyewear=[1, 2, 0, 0, 0, 0], style=[1, 1, 1, 0, 1, 1])
    # dark skin (level >= 2): source shows it at 1, 2, 3, 5; tuned keeps it at 1 and 3 (level 4 → 1 is lost)
    assert retention(source, tuned, DARK_SKIN) == pytest.approx(2 / 4)
    # eyewear: source at 1, 2, 5; kept at 1 only (glasses → sunglasses still counts as eyewear)
    assert retention(source, tuned, EYEWEAR) == pytest.approx(1 / 3)
    # faces that gain an attribute (0 → 2 skin, 0 → 1 eyewear at index 0) do not raise retention
    assert retention(tuned, tuned, DARK_SKIN) == 1.0
    assert math.isnan(retention(source, tuned, EXPRESSION))      # no source face smiles
    assert style_rate(tuned) == pytest.approx(5 / 6)


def test_sample_metrics_averages_the_defined_retentions():
    class NoRealism:
        def realism_scores(self, images, prefix=""):
            return {}

    source = labels(skin=[3, 3, 0, 0], eyewear=[1, 0, 1, 0], expression=[0, 0, 0, 0])
    tuned = labels(skin=[3, 0, 0, 0], eyewear=[1, 0, 1, 2], expression=[1, 0, 0, 0])
    metrics = sample_metrics(tuned, source, None, NoRealism())
    assert metrics["retain_dark_skin"] == pytest.approx(0.5)
    assert metrics["retain_eyewear"] == pytest.approx(1.0)
    assert math.isnan(metrics["retain_expression"])
    assert metrics["retain_mean"] == pytest.approx(0.75)              # NaN (undefined) is left out
    assert metrics["presence_eyewear"] == pytest.approx(0.75)
    assert metrics["presence_expression"] == pytest.approx(0.25)


def test_summarize_mean_and_sample_sd():
    stats = summarize([{"a": 0.2, "b": math.nan}, {"a": 0.4, "b": 1.0}, {"a": 0.9, "b": 3.0}])
    assert stats["a"]["mean"] == pytest.approx(0.5) and stats["a"]["n"] == 3
    assert stats["a"]["sd"] == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))
    assert stats["b"] == {"mean": pytest.approx(2.0), "sd": pytest.approx(math.sqrt(2)), "n": 2}
    assert math.isnan(summarize([{"a": 1.0}])["a"]["sd"])


def test_limited_target_folder_lacks_the_excluded_attributes(tmp_path):
    limited = write_domain(DomainSpec.limited_target(), tmp_path / "limited", n=400, size=32)
    full = write_domain(DomainSpec.full_target(), tmp_path / "full", n=400, size=32)
    files, limited_labels = read_labels(limited)
    _, full_labels = read_labels(full)
    assert len(files) == 400 and all((limited / name).is_file() for name in files)
    for absent in ABSENT:
        assert not absent.shown(limited_labels).any(), absent.key
        assert absent.shown(full_labels).mean() > 0.2, absent.key   # the check could fail: the full target has them
    assert set(np.unique(limited_labels.skin)) == {0, 1} and set(np.unique(limited_labels.style)) == {1}


def test_runs_share_one_budget():
    quick, full = BenchmarkConfig.quick(), BenchmarkConfig.full()
    assert [label for label, _ in quick.runs()] == ["naive", "SDFT λ=3"]
    runs = full.runs()
    per_seed = 2 + len(full.lams) + len(full.ablation_weightings) + 1
    assert len(runs) == per_seed * len(full.seeds)
    assert {(s.steps, s.batch_size, s.lr, s.num_images) for _, s in runs} == {(800, 128, 1e-4, 1300)}
    modes = {label: spec.mode for label, spec in runs}
    assert modes["scratch"] == "scratch" and modes["naive"] == "naive" and modes["SDFT λ=1, no aux"] == "sdft"
    assert {spec.loss.lambda_aux for label, spec in runs if label.endswith("no aux")} == {0.0}
    assert {(spec.loss.distill_weighting, spec.loss.aux_weighting) for label, spec in runs
            if "constant" in label} == {(Constant(), Constant())}


def test_a_smile_share_reaches_every_run_and_the_data_it_trains_on(tmp_path):
    """The benchmark's one config path: the share set on ``finetune`` is in every run's config (so in its cache
    key) and in the limited-target folder the evaluation writes, which equals what the zoo trains on."""
    from sdft_lite.experiments.benchmark import prepare_data
    from sdft_lite.train import TrainConfig
    config = BenchmarkConfig.full(finetune=TrainConfig.synthfaces_full(target_smile_share=0.05, num_images=200),
                                  num_reference=8, num_sdedit=8)
    assert {spec.target_smile_share for _, spec in config.runs()} == {0.05}
    data = prepare_data(config, tmp_path, 16)
    shown = data.checks["limited_train_faces_showing_absent"]
    assert 0 < shown["expression"] < 200 * 0.05 + 4 * (200 * 0.05 * 0.95) ** 0.5
    assert shown["eyewear"] == 0 and shown["dark_skin"] == 0
    from sdft_lite.experiments.benchmark import reproduction_records
    [record] = reproduction_records({"naive": {}}, config, "CPU")
    assert record["notes"].endswith("5% of the limited target smiling")


def test_tiny_benchmark_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("SDFT_LITE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FORCE_TRAIN", raising=False)
    config = BenchmarkConfig(name="tiny", finetune=TrainConfig.synthfaces_full(steps=1, batch_size=4, num_images=16), scratch=False,
                             lams=(1.0,), seeds=(0,), num_noises=6, sample_steps="ddim3", num_sdedit=3,
                             sdedit_steps="ddim4", num_reference=24, grid_rows=3, batch_size=8)
    result = run_benchmark(config, tmp_path / "out", device="cpu", log=None)
    out = tmp_path / "out"
    for name in ("results.json", "records.json", "grid.png", "grid_images.npz", "sdedit_grid.png", "frontier.png"):
        assert (out / name).is_file(), name
    assert list(load_grid_images(out / "grid_images.npz")) == ["source", "naive", "SDFT λ=1"]
    saved = json.loads((out / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert saved["config"]["lams"] == [1.0] and saved["config"]["num_noises"] == 6
    assert [run["label"] for run in saved["runs"]] == ["naive", "SDFT λ=1"]
    assert saved["data"]["checks"]["limited_folder_equals_training_data"] is True
    assert saved["data"]["checks"]["limited_train_faces_showing_absent"] == {"dark_skin": 0, "eyewear": 0,
                                                                            "expression": 0}
    assert saved["source"]["retain_mean"] == 1.0                      # the source against itself
    for run in result["runs"]:
        metrics = run["metrics"]
        assert run["loaded_from_cache"] is False
        for key in ("style_rate", "sdedit_keep_mean", "sdedit_style_rate", "presence_eyewear"):
            assert 0.0 <= metrics[key] <= 1.0, key
        assert metrics["fd_full"] >= 0 and metrics["fd_limited"] >= 0
    records = json.loads((out / "records.json").read_text())
    assert {r["model"] for r in records} == {"Naive Fine-Tune", "SDFT λ=1"}
    assert all({"paper_item", "dataset", "model", "metrics"} <= r.keys() for r in records)
    assert "naive" in format_table(result["summary"])
    with Image.open(out / "grid.png") as grid:
        assert grid.width > grid.height * 0.5                          # 3 labelled columns


def stats(mean: float, sd: float = math.nan, n: int = 1) -> dict:
    return {"mean": mean, "sd": sd, "n": n}


def summary_row(retain: tuple[float, float, float], seeds: int = 1, sd: float = math.nan) -> dict:
    row = {f"retain_{a.key}": stats(r, sd, seeds) for a, r in zip(ABSENT, retain)}
    row["retain_mean"] = stats(sum(retain) / 3, sd, seeds)
    row["style_rate"] = stats(1.0, sd, seeds)
    return row


def test_one_seed_gap_has_the_binomial_standard_error():
    source = {f"presence_{a.key}": stats(0.5) for a in ABSENT}      # 50 of 100 noises show each attribute
    sdft, naive = summary_row((0.4, 0.2, 0.3)), summary_row((0.1, 0.0, 0.0))
    gap, se, what = retention_gap(sdft, naive, source, num_noises=100)
    by_hand = math.sqrt(sum(p * (1 - p) / 50 for p in (0.4, 0.2, 0.3, 0.1, 0.0, 0.0))) / 3
    assert gap == pytest.approx(0.9 / 3 - 0.1 / 3) and se == pytest.approx(by_hand, rel=1e-12)
    assert "binomial" in what
    line = verdict({"source": source, "naive": naive, "SDFT λ=3": sdft}, num_noises=100)[0]
    assert "clearly more" in line and "NOT" not in line and f"± {by_hand:.2f}" in line


def test_seed_gap_uses_the_spread_over_seeds():
    sdft, naive = summary_row((0.3, 0.3, 0.3), seeds=3, sd=0.3), summary_row((0.1, 0.1, 0.1), seeds=3, sd=0.3)
    gap, se, what = retention_gap(sdft, naive, None, num_noises=100)
    assert gap == pytest.approx(0.2) and se == pytest.approx(math.sqrt(2 * 0.09 / 3)) and "3 seeds" in what
    line = verdict({"naive": naive, "SDFT λ=1": sdft}, num_noises=100)[0]
    assert "NOT clearly more" in line                                 # 0.2 < 2 × 0.245: not clear
