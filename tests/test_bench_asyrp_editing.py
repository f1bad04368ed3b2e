"""bench/asyrp_editing.py's choice of edit windows for the Table 2 analogue."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import asyrp_editing  # noqa: E402

from sdft_lite.experiments.benchmark import BenchmarkConfig  # noqa: E402
from sdft_lite.experiments.editing_table import edit_window, label_size, plain_label, sized  # noqa: E402
from sdft_lite.sdft import SDFTConfig  # noqa: E402
from sdft_lite.train import TrainConfig  # noqa: E402

# the H200 curves of results/synthfaces_editing (two of them): the source decides the mouth later than naive
SURVIVAL = {"source": {"0": 1.0, "100": 0.998, "200": 0.968, "300": 0.918, "400": 0.814, "500": 0.744, "600": 0.7,
                       "800": 0.65},
            "naive": {"0": 1.0, "100": 0.838, "200": 0.33, "300": 0.092, "400": 0.04, "500": 0.024, "600": 0.02,
                      "800": 0.014}}


def test_each_model_gets_the_window_of_its_own_survival_curve():
    windows = asyrp_editing.own_windows(SURVIVAL, ["source", "naive"])
    assert windows == {"source": (200, 600), "naive": (100, 300)}
    assert windows["naive"] == edit_window({int(t): v for t, v in SURVIVAL["naive"].items()})


def test_a_missing_curve_is_one_clear_line():
    with pytest.raises(SystemExit, match="needs the smile-survival curves of SDFT λ=3"):
        asyrp_editing.own_windows(SURVIVAL, ["naive", "SDFT λ=3"])


def test_the_table_edits_the_very_models_the_benchmark_measured():
    """Full mode: a label names the full benchmark's run of that seed (same zoo key, so the same fine-tuned model
    the retention tables and the chapters use); the two weighting variants are the benchmark's Table 4 models."""
    assert asyrp_editing.model_config("naive", 2, quick=False) == TrainConfig.synthfaces_full(
        mode="naive", loss=SDFTConfig.naive(), seed=2)
    assert asyrp_editing.model_config("SDFT λ=3", 1, quick=False) == TrainConfig.synthfaces_full(
        mode="sdft", loss=SDFTConfig.symmetric(3.0), seed=1)
    runs = dict(BenchmarkConfig.full(seeds=(0,)).runs())
    for label in asyrp_editing.TABLE_MODELS:
        assert asyrp_editing.model_config(label, 0, quick=False) == runs[label]
    assert asyrp_editing.model_config("source", 0, quick=False) is None


def test_an_unknown_model_is_one_clear_line():
    with pytest.raises(SystemExit, match="no benchmark model 'SDFT λ=7'"):
        asyrp_editing.model_config("SDFT λ=7", 0, quick=False)
    with pytest.raises(SystemExit, match="no quick model 'SDFT λ=10'"):
        asyrp_editing.model_config("SDFT λ=10", 0, quick=True)


def test_a_repeated_run_replaces_the_carried_one_instead_of_counting_as_another_seed():
    def row(seed, window, smiling):
        return {"part": "table", "model": "naive", "direction_kind": "classifier", "window": window, "seed": seed,
                "judge": "SynthCLIP", "edit": {"smiling": smiling}, "reconstruction": {"smiling": 0.0}}
    carried = [row(0, [200, 500], 0.0), row(0, [100, 300], 0.1)]
    rows = asyrp_editing.latest_runs(carried + [row(0, [100, 300], 0.3), row(1, [100, 300], 0.5)])
    assert [(r["window"], r["seed"], r["edit"]["smiling"]) for r in rows] == [
        ([200, 500], 0, 0.0), ([100, 300], 0, 0.3), ([100, 300], 1, 0.5)]
    summary = {tuple(e["window"]): e for e in asyrp_editing.summarize(rows)}
    assert summary[(100, 300)]["seeds"] == 2 and summary[(100, 300)]["edit_smiling"]["mean"] == 0.4


def test_carried_rows_keep_the_provenance_of_every_earlier_call():
    bar = {"command": "bar", "commit": "a" * 40, "wall_seconds": 1.0}
    table = {"command": "table", "commit": "b" * 40, "wall_seconds": 2.0, "previous": bar, "rows": []}
    assert asyrp_editing.earlier_calls(table) == [bar, {"command": "table", "commit": "b" * 40, "wall_seconds": 2.0}]
    own = {"command": "own", "commit": "c" * 40, "wall_seconds": 3.0,
           "earlier_calls": asyrp_editing.earlier_calls(table)}
    assert [call["command"] for call in asyrp_editing.earlier_calls(own)] == ["bar", "table", "own"]


def test_a_run_without_a_table_keeps_the_windows_the_carried_table_rows_were_edited_in():
    table = {"command": "table", "commit": "b" * 40, "wall_seconds": 2.0, "rows": [],
             "survival": {"naive": {"0": 1.0}}, "table_windows": {"classifier": {"naive": [100, 300]}}}
    kept = asyrp_editing.carried(table)
    assert kept["table_windows"] == {"classifier": {"naive": [100, 300]}}
    assert kept["survival"] == {"naive": {"0": 1.0}} and kept["earlier_calls"][-1]["command"] == "table"
    assert "table_windows" not in asyrp_editing.carried({"command": "bar", "commit": "a", "wall_seconds": 1.0})


def test_a_carried_result_keeps_its_notes():
    noted = {"command": "bar", "commit": "a", "wall_seconds": 1.0, "source_64_note": "how the model was made",
             "commit_note": "the device's HEAD was stale"}
    kept = asyrp_editing.carried(noted)
    assert kept["source_64_note"] == "how the model was made" and "commit_note" not in kept
    assert kept["earlier_calls"][-1]["commit_note"] == "the device's HEAD was stale"   # stays with its call


def test_a_recipe_is_its_own_setting_and_old_rows_have_asyrps():
    """λ_L1 and c change the edit, so rows with another recipe are summarized apart; rows written before recipes
    were recorded count as Asyrp's (λ_L1 = 3, c = 1), and only a non-default recipe is named in the summary."""
    def row(seed, smiling, **recipe):
        return {"part": "bar", "model": "source", "direction_kind": "classifier", "window": [200, 500], "seed": seed,
                "judge": "SynthCLIP", "edit": {"smiling": smiling, "kept_mean": 0.96, "psnr_db": 28.0},
                "reconstruction": {"smiling": 0.0, "kept_mean": 0.98, "psnr_db": 30.0}, **recipe}
    rows = [row(0, 0.86), row(1, 0.88), row(0, 0.82, lambda_l1=3.0, scale=1.0), row(0, 0.70, lambda_l1=10.0, scale=0.8)]
    summary = asyrp_editing.summarize(asyrp_editing.latest_runs(rows))
    assert [(e.get("lambda_l1"), e.get("scale"), e["seeds"]) for e in summary] == [(None, None, 2), (10.0, 0.8, 1)]
    assert summary[0]["edit_smiling"]["mean"] == pytest.approx(0.85)   # the explicit default replaced seed 0
    assert asyrp_editing.chosen_window(summary, "classifier") == (200, 500)
    assert asyrp_editing.chosen_window(summary, "classifier", (10.0, 0.8)) is None   # 0.70 < 0.8: fails the bar
    assert asyrp_editing.chosen_window(summary, "classifier", size=64) is None   # passed at 32 px, not at 64
    at_64 = asyrp_editing.summarize([{**row(0, 0.96), "size": 64, "window": [300, 500]}])
    assert asyrp_editing.chosen_window(summary + at_64, "classifier", size=64) == (300, 500)
    config = asyrp_editing.with_recipe(asyrp_editing.EditBenchConfig(), 10.0, 0.8)
    assert (config.asyrp.lambda_l1, config.asyrp.scale, config.asyrp.t_edit) == (10.0, 0.8, 200)


def test_a_smile_share_picks_the_models_fine_tuned_on_that_target():
    scarce = asyrp_editing.model_config("SDFT λ=1", 1, quick=False, smile_share=0.02)
    assert scarce == TrainConfig.synthfaces_full(mode="sdft", loss=SDFTConfig.symmetric(1.0), seed=1,
                                                 target_smile_share=0.02)
    assert scarce != asyrp_editing.model_config("SDFT λ=1", 1, quick=False)
    with pytest.raises(SystemExit, match="drop --limited-smile-share"):
        asyrp_editing.model_config("naive", 0, quick=True, smile_share=0.02)


def test_a_larger_source_model_is_its_own_setting_and_loads_from_its_checkpoint(tmp_path):
    from sdft_lite.checkpoint import save_atomic
    from sdft_lite.unet import UNetConfig, UNetModel
    config = UNetConfig.tiny().replace(image_size=64, attention_resolutions="32")
    path = save_atomic({"model": UNetModel(config).state_dict(), "unet_config": config.to_flags()},
                       tmp_path / "source64.pt")
    assert asyrp_editing.source_size(str(path)) == 64
    unet = asyrp_editing.load_model("source", 0, False, "cpu", source=str(path))
    assert unet.config.image_size == 64 and not unet.training
    row = {"part": "bar", "model": "source", "direction_kind": "classifier", "window": [200, 500], "seed": 0}
    assert asyrp_editing.setting(dict(row, size=64)) != asyrp_editing.setting(row)          # no replacing
    assert asyrp_editing.setting(dict(row, size=32)) == asyrp_editing.setting(row)          # old rows: 32 px
    assert len(asyrp_editing.latest_runs([row, dict(row, size=64)])) == 2


def test_a_larger_source_is_fine_tuned_into_the_table_models_named_by_size(tmp_path, monkeypatch):
    """--source with the table part: the benchmark's runs fine-tune that model (its layout, its size), the curves
    and rows are named "naive 64 px", and the 32-px table windows a --previous file carries stay."""
    import json

    import sdft_lite.experiments.zoo as zoo
    from sdft_lite.checkpoint import save_atomic
    from sdft_lite.unet import UNetConfig, UNetModel
    config = UNetConfig.tiny().replace(image_size=64, attention_resolutions="32")
    path = save_atomic({"model": UNetModel(config).state_dict(), "unet_config": config.to_flags()},
                       tmp_path / "source64.pt")
    previous = {"command": "table", "commit": "a" * 40, "wall_seconds": 1.0, "rows": [],
                "survival": {"naive": {"0": 1.0}}, "table_windows": {"classifier": {"naive": [100, 300]}}}
    (tmp_path / "previous.json").write_text(json.dumps(previous))
    trained, jobs = [], []
    monkeypatch.setattr(zoo, "finetune_many", lambda configs, **kwargs: trained.extend(configs) or configs)
    monkeypatch.setattr(asyrp_editing, "survival_curves",
                        lambda args, models, size: {m: {t: 1.0 - t / 1000 for t in (0, 100, 200, 300, 400, 500, 600,
                                                                                     800)} for m in models})
    monkeypatch.setattr(asyrp_editing, "run_jobs", lambda new_jobs, args, write: jobs.extend(new_jobs) or [])
    monkeypatch.setattr(sys, "argv", ["asyrp_editing.py", "--out", str(tmp_path / "out"), "--source", str(path),
                                      "--parts", "survival,table", "--seeds", "0", "--models", "naive;SDFT λ=1",
                                      "--directions", "classifier", "--table-windows", "survival",
                                      "--previous", str(tmp_path / "previous.json"), "--finetune-save-every", "50"])
    assert asyrp_editing.main() == 0
    assert [(c.mode, c.unet.image_size, c.source_checkpoint, c.save_every) for c in trained] == [
        ("naive", 64, str(path), 50), ("sdft", 64, str(path), 50)]
    assert zoo.key(trained[0]) == zoo.key(asyrp_editing.model_config("naive", 0, False, source=str(path)))
    result = json.loads((tmp_path / "out" / "editing.json").read_text())
    assert set(result["survival"]) == {"naive", "source 64 px", "naive 64 px", "SDFT λ=1 64 px"}
    windows = result["table_windows"]["classifier"]
    assert windows["naive"] == [100, 300] and set(windows) == {"naive", "naive 64 px", "SDFT λ=1 64 px"}
    assert [(j["model"], j["config"].size, j["source"]) for j in jobs] == [
        ("naive 64 px", 64, str(path)), ("SDFT λ=1 64 px", 64, str(path))]


def test_labels_name_their_size_and_windows_merge_by_size():
    assert sized("naive", 32) == "naive" and sized("naive", 64) == "naive 64 px"
    assert plain_label("SDFT λ=1, constant w 64 px") == "SDFT λ=1, constant w"
    assert plain_label("naive") == "naive" and label_size("source 64 px") == 64
    earlier = {"classifier": {"naive": [100, 300], "naive 64 px": [300, 500]}, "synthclip": [200, 500]}
    merged = asyrp_editing.merged_windows(earlier, {"classifier": {"naive 64 px": (200, 400)}})
    assert merged == {"classifier": {"naive": [100, 300], "naive 64 px": [200, 400]}, "synthclip": [200, 500]}
    again = asyrp_editing.merged_windows(earlier, {"classifier": {"naive": (100, 400)}})
    assert again["classifier"] == {"naive 64 px": [300, 500], "naive": [100, 400]}
    # a table run of some models (--models with --previous) keeps the windows of the others, of the same size too:
    # their rows stay the table's current ones (the 2%-share table lost five models' windows this way)
    more = asyrp_editing.merged_windows(again, {"classifier": {"SDFT λ=3": (100, 300)}})
    assert more["classifier"] == {"naive 64 px": [300, 500], "naive": [100, 400], "SDFT λ=3": [100, 300]}


def test_the_bar_window_can_come_from_the_bar_models_own_curve():
    curves = {"source 64 px": SURVIVAL["naive"]}
    windows = asyrp_editing.bar_windows("survival;200,500;100,300", curves, "source 64 px")
    assert windows == [(100, 300), (200, 500)]         # the curve's window first, a repeat of it runs once
    with pytest.raises(SystemExit, match="needs the smile-survival curve of source 64 px"):
        asyrp_editing.bar_windows("survival", SURVIVAL, "source 64 px")


def test_the_survival_of_a_larger_source_hands_it_faces_at_its_size(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from sdft_lite.checkpoint import save_atomic
    from sdft_lite.unet import UNetConfig, UNetModel
    config = UNetConfig.tiny().replace(image_size=64, attention_resolutions="32")
    path = save_atomic({"model": UNetModel(config).state_dict(), "unet_config": config.to_flags()},
                       tmp_path / "source64.pt")
    seen = {}

    def survival(unet, classifier, faces, ts, steps):
        seen.update(size=unet.config.image_size, faces=tuple(faces.shape))
        return {t: 1.0 for t in ts}
    monkeypatch.setattr(asyrp_editing, "smile_survival", survival)
    args = SimpleNamespace(survival_n=3, device="cpu", quick=True, limited_smile_share=0.0, source=str(path))
    curves = asyrp_editing.survival_curves(args, ["source 64 px"], 64)
    assert list(curves) == ["source 64 px"] and seen == {"size": 64, "faces": (3, 3, 64, 64)}


def test_a_larger_sources_survival_fine_tunes_nothing(tmp_path, monkeypatch):
    """--source with the survival part measures that model alone (a call once spent its time fine-tuning the
    table's 21 models first)."""
    import json

    import sdft_lite.experiments.zoo as zoo
    from sdft_lite.checkpoint import save_atomic
    from sdft_lite.unet import UNetConfig, UNetModel
    config = UNetConfig.tiny().replace(image_size=64, attention_resolutions="32")
    path = save_atomic({"model": UNetModel(config).state_dict(), "unet_config": config.to_flags()},
                       tmp_path / "source64.pt")

    def no_finetuning(*args, **kwargs):
        raise AssertionError("fine-tuned the table's models")
    monkeypatch.setattr(zoo, "finetune_many", no_finetuning)
    monkeypatch.setattr(asyrp_editing, "survival_curves", lambda args, models, size: {m: {0: 1.0} for m in models})
    monkeypatch.setattr(sys, "argv", ["asyrp_editing.py", "--out", str(tmp_path / "out"), "--source", str(path),
                                      "--parts", "survival"])
    assert asyrp_editing.main() == 0
    result = json.loads((tmp_path / "out" / "editing.json").read_text())
    assert list(result["survival"]) == ["source 64 px"] and "finetuning" not in result


def test_a_resumed_table_runs_only_the_jobs_its_previous_file_lacks(tmp_path, monkeypatch):
    """--resume: a call cut off after some edit jobs goes on with the rest; the carried rows stay, and without
    --resume every job runs again (the device session that needed this re-ran all six and finished none)."""
    import json

    import sdft_lite.experiments.zoo as zoo
    curve = {"0": 1.0, "100": 0.9, "200": 0.6, "300": 0.4, "400": 0.3, "500": 0.2, "600": 0.1, "800": 0.1}
    window = list(edit_window({int(t): share for t, share in curve.items()}))   # every model's, from its curve
    done = {"part": "table", "model": "naive", "seed": 0, "window": window, "direction_kind": "classifier",
            "lambda_l1": 3.0, "scale": 1.0, "size": 32, "judge": "SynthCLIP",
            "edit": {"smiling": 0.7}, "reconstruction": {"smiling": 0.0}}
    previous = {"command": "table", "commit": "a" * 40, "wall_seconds": 1.0, "rows": [done],
                "survival": dict.fromkeys(("source", "naive", "SDFT λ=1"), curve)}
    (tmp_path / "previous.json").write_text(json.dumps(previous))
    monkeypatch.setattr(zoo, "finetune_many", lambda configs, **kwargs: [])

    def run(*extra):
        jobs = []
        monkeypatch.setattr(asyrp_editing, "run_jobs", lambda new_jobs, args, write: jobs.extend(new_jobs) or [])
        monkeypatch.setattr(sys, "argv", ["asyrp_editing.py", "--out", str(tmp_path / "out"), "--parts", "table",
                                          "--seeds", "0,1", "--models", "naive;SDFT λ=1", "--directions",
                                          "classifier", "--table-windows", "survival", "--previous",
                                          str(tmp_path / "previous.json"), *extra])
        assert asyrp_editing.main() == 0
        return sorted((j["model"], j["seed"]) for j in jobs)

    assert run("--resume") == [("SDFT λ=1", 0), ("SDFT λ=1", 1), ("naive", 1)]
    assert run() == [("SDFT λ=1", 0), ("SDFT λ=1", 1), ("naive", 0), ("naive", 1)]
    result = json.loads((tmp_path / "out" / "editing.json").read_text())
    assert result["rows"] == [done]   # carried either way


def test_a_bar_on_validation_photos_is_its_own_setting_and_chooses_no_table_window(tmp_path, monkeypatch):
    """--bar-split validation: the bar edits faces of their own (not the test faces), its rows are summarized
    apart from the test rows of the same recipe, and the table's window still comes from a test-photo pass."""
    import json

    from sdft_lite.experiments.editing_table import EditBenchConfig, neutral_faces
    with pytest.raises(ValueError, match="eval_split must be one of"):
        EditBenchConfig(eval_split="train")
    validation, test = (neutral_faces("source", 4, 32, split, "cpu") for split in ("validation", "test"))
    assert all((v - t).abs().max() > 0.1 for v in validation for t in test)   # no face in both

    jobs = []
    monkeypatch.setattr(asyrp_editing, "run_jobs", lambda new_jobs, args, write: jobs.extend(new_jobs) or [])
    monkeypatch.setattr(sys, "argv", ["asyrp_editing.py", "--out", str(tmp_path / "out"), "--parts", "bar",
                                      "--seeds", "0", "--bar-directions", "classifier", "--windows", "200,500",
                                      "--bar-recipes", "3:1;3:0.9", "--bar-split", "validation"])
    assert asyrp_editing.main() == 0
    assert [(j["config"].eval_split, j["config"].asyrp.scale) for j in jobs] == [("validation", 1.0),
                                                                               ("validation", 0.9)]
    assert json.loads((tmp_path / "out" / "editing.json").read_text())["rows"] == []

    def row(split, smiling):
        job = {"part": "bar", "model": "source", "seed": 0, "config": EditBenchConfig(eval_split=split)}
        return {**asyrp_editing.job_identity(job), "judge": "SynthCLIP",
                "edit": {"smiling": smiling, "kept_mean": 0.97, "psnr_db": 28.0},
                "reconstruction": {"smiling": 0.0, "kept_mean": 0.99, "psnr_db": 34.0}}
    summary = asyrp_editing.summarize([row("validation", 0.9), row("test", 0.5)])
    assert [(e.get("split"), e["edit_smiling"]["mean"]) for e in summary] == [(None, 0.5), ("validation", 0.9)]
    assert asyrp_editing.chosen_window(summary, "classifier") is None   # 0.5 < 0.8 on the test photos
