"""The rivals frontier end to end on a CPU-sized setting: every method's runs are built from one budget, each model
is evaluated from the same noises, and the table, JSON and figure are written."""
import json

import pytest

from sdft_lite.adapters import LoRAConfig
from sdft_lite.experiments.benchmark import BenchmarkConfig
from sdft_lite.experiments.frontier import METHODS, FrontierConfig, format_frontier, merge_results, run_frontier
from sdft_lite.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


def test_every_run_shares_the_budget_and_differs_only_in_its_method():
    config = FrontierConfig.full()
    runs = config.runs()
    assert len(runs) == 3 * sum(len(m.values) for m in METHODS)
    budget = {(r.steps, r.batch_size, r.lr, r.num_images) for *_, r in runs}
    assert budget == {(800, 128, 1e-4, 1300)}
    by_label = {(label, value): run for label, value, seed, run in runs if seed == 0}
    assert by_label["naive", 0.0].mode == "naive" and by_label["SDFT", 1.0].loss.lambda_distill == 1.0
    assert by_label["LoRA", 4.0].lora == LoRAConfig(rank=4) and by_label["LoRA", 4.0].mode == "naive"
    assert by_label["SDFT + LoRA r4", 10.0].lora.rank == 4 and by_label["SDFT + LoRA r4", 10.0].mode == "sdft"
    ewc = by_label["EWC", 1e6]
    assert (ewc.mode, ewc.rival.method, ewc.rival.weight, ewc.loss.needs_teacher) == ("naive", "ewc", 1e6, False)


def test_a_tiny_frontier_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("SDFT_LITE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FORCE_TRAIN", raising=False)
    tiny = BenchmarkConfig(name="tiny", finetune=TrainConfig.synthfaces_full(steps=1, batch_size=4, num_images=12),
                           scratch=False, lams=(), seeds=(0,), num_noises=6, sample_steps="ddim3", num_sdedit=2,
                           sdedit_steps="ddim4", num_reference=24, batch_size=8)
    methods = tuple(m for m in METHODS if m.label in ("naive", "LoRA"))
    config = FrontierConfig(name="tiny", benchmark=tiny, methods=tuple(
        type(m)(m.label, m.knob, m.values[:1], m.build) for m in methods), num_centres=3)
    result = run_frontier(config, tmp_path / "out", device="cpu", log=None)
    assert [(r["method"], r["knob"]) for r in result["records"]] == [("naive", 0.0), ("LoRA", 1.0)]
    for record in result["records"]:
        m = record["metrics"]
        assert 0 <= m["near_duplicates"] <= 1 and m["intra_cluster"] >= 0 and m["fd_full"] > 0
    assert result["distance"] == "synthfaces-realism cosine"
    stored = json.loads((tmp_path / "out" / "frontier.json").read_text())
    assert stored["summary"].keys() == {"naive 0", "LoRA 1"} and (tmp_path / "out" / "frontier.png").is_file()
    assert "LoRA 1" in format_frontier(result)
    second_seed = {**result, "records": [{**r, "seed": 1} for r in result["records"]]}
    merged = merge_results([result, second_seed])
    assert merged["config"]["seeds"] == [0, 1] and merged["summary"]["naive 0"]["retain_mean"]["n"] == 2
