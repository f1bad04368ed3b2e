"""The SynthFaces model zoo: fine-tuned models are trained once, cached under SDFT_LITE_HOME, loaded afterwards,
and retrained under FORCE_TRAIN=1; the cache key tells every setting apart."""
import dataclasses
import os
import threading

import pytest
import torch

from sdft_lite.experiments import zoo
from sdft_lite.sdft import SDFTConfig
from sdft_lite.train import TrainConfig
from sdft_lite.weighting import Constant

TINY = TrainConfig.synthfaces_full(mode="naive", steps=2, batch_size=4, num_images=16, lr=1e-3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


@pytest.fixture
def counted_trainer(monkeypatch, tmp_path):
    """An empty cache in tmp_path and a Trainer that counts its runs."""
    monkeypatch.setenv("SDFT_LITE_HOME", str(tmp_path))
    monkeypatch.delenv("FORCE_TRAIN", raising=False)
    runs = []

    class CountingTrainer(zoo.Trainer):
        def run(self, *args, **kwargs):
            runs.append(self.config.mode)
            return super().run(*args, **kwargs)

    monkeypatch.setattr(zoo, "Trainer", CountingTrainer)
    return runs


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_second_call_loads_and_force_train_retrains(counted_trainer, monkeypatch, tmp_path):
    assert not zoo.is_cached(TINY)
    first = weights(zoo.finetuned(TINY, device="cpu"))
    assert counted_trainer == ["naive"]
    assert zoo.cached_path(TINY).is_file() and zoo.cached_path(TINY).is_relative_to(tmp_path)
    assert zoo.is_cached(TINY)

    second = weights(zoo.finetuned(TINY, device="cpu"))
    assert counted_trainer == ["naive"], "a cached model must be loaded, not retrained"
    assert all(torch.equal(first[k], second[k]) for k in first)

    monkeypatch.setenv("FORCE_TRAIN", "1")
    assert not zoo.is_cached(TINY)
    third = weights(zoo.finetuned(TINY, device="cpu"))
    assert counted_trainer == ["naive", "naive"], "FORCE_TRAIN=1 must retrain"
    # the run is deterministic per seed: retraining reproduces the cached weights (fp32 on one CPU)
    assert all(torch.allclose(first[k], third[k], atol=1e-6) for k in first)


def test_naive_starts_from_the_source_and_scratch_does_not(counted_trainer):
    source = weights(zoo.source_model())
    naive = weights(zoo.finetuned(TINY, device="cpu"))
    scratch = weights(zoo.finetuned(dataclasses.replace(TINY, mode="scratch"), device="cpu"))
    assert counted_trainer == ["naive", "scratch"]
    distance = {name: sum(float((m[k] - source[k]).norm()) for k in source if source[k].is_floating_point())
                for name, m in (("naive", naive), ("scratch", scratch))}
    total = sum(float(v.norm()) for v in source.values() if v.is_floating_point())
    assert 0 < distance["naive"] < 0.05 * total      # two small steps away from the source
    assert distance["scratch"] > 0.5 * total         # a fresh random init
    log = zoo.training_log(TINY)
    assert log and {"loss"} <= set(log[-1])


def test_cache_key_tells_settings_apart_and_ignores_where_a_run_reports():
    base = TrainConfig.synthfaces_quick()
    assert zoo.key(base) == zoo.key(TrainConfig.synthfaces_quick())
    changed = [dataclasses.replace(base, **change) for change in
               ({"mode": "naive"}, {"loss": SDFTConfig.symmetric(3.0)}, {"seed": 1}, {"steps": 151},
                {"loss": SDFTConfig.symmetric(1.0, distill_weighting=Constant(), aux_weighting=Constant())},
                {"loss": SDFTConfig.symmetric(1.0, lambda_aux=0.0)}, {"batch_size": 16}, {"lr": 1e-4},
                {"num_images": 1000}, {"unet": base.unet.replace(prediction="v")}, {"aux_samples": 4},
                {"target_smile_share": 0.02})]
    keys = {zoo.key(config) for config in changed} | {zoo.key(base)}
    assert len(keys) == len(changed) + 1
    assert zoo.key(base).startswith("sdft-lam1-")
    same = [dataclasses.replace(base, **change) for change in
            ({"out_dir": "elsewhere"}, {"log_every": 1}, {"progress": True})]
    assert {zoo.key(config) for config in same} == {zoo.key(base)}


def test_naive_and_scratch_configs_drop_the_sdft_coefficients():
    """mode naive trains the same whatever λ the loss carries: one config, one cache entry."""
    naive = TrainConfig.synthfaces_quick(mode="naive", loss=SDFTConfig.symmetric(3.0))
    assert naive == TrainConfig.synthfaces_quick(mode="naive") and not naive.loss.needs_teacher


def test_presets(monkeypatch):
    quick, full = TrainConfig.synthfaces_quick(), TrainConfig.synthfaces_full()
    assert (full.steps, full.batch_size, full.lr) == (800, 128, 1e-4)
    assert quick.steps < full.steps and quick.batch_size < full.batch_size
    assert quick.unet == zoo.source_model().config.replace(dropout=0.1)
    monkeypatch.setenv("SDFT_QUICK", "1")
    assert zoo.default_config() == quick
    monkeypatch.setenv("SDFT_QUICK", "0")
    assert zoo.default_config() == full


def test_a_stopped_run_is_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("SDFT_LITE_HOME", str(tmp_path))
    monkeypatch.delenv("FORCE_TRAIN", raising=False)

    class InterruptedTrainer(zoo.Trainer):
        def run(self, *args, **kwargs):
            self.stop_requested = True        # as the SIGTERM handler does: stop before the first step
            return super().run(*args, **kwargs)

    monkeypatch.setattr(zoo, "Trainer", InterruptedTrainer)
    with pytest.raises(KeyboardInterrupt, match="stopped at step 0"):
        zoo.finetuned(TINY, device="cpu")
    assert not zoo.cached_path(TINY).exists()


def test_parallel_fine_tuning_equals_one_run_at_a_time(monkeypatch, tmp_path):
    """finetune_many with two worker processes caches exactly the models finetuned() trains alone."""
    monkeypatch.setenv("SDFT_LITE_HOME", str(tmp_path))
    monkeypatch.delenv("FORCE_TRAIN", raising=False)
    specs = [TINY, dataclasses.replace(TINY, mode="sdft", loss=SDFTConfig.symmetric(1.0), seed=1)]
    assert sorted(zoo.finetune_many(specs + specs[:1], workers=2, device="cpu")) == sorted(map(zoo.key, specs))
    assert all(zoo.is_cached(spec) for spec in specs)
    assert zoo.finetune_many(specs, workers=2) == []                     # all cached: nothing to do
    parallel = [weights(zoo.finetuned(spec)) for spec in specs]
    monkeypatch.setenv("FORCE_TRAIN", "1")
    for spec, expected in zip(specs, parallel):
        alone = weights(zoo.finetuned(spec, device="cpu"))
        for name, tensor in alone.items():
            torch.testing.assert_close(expected[name], tensor, rtol=0, atol=0)


# ---- the shipped quick-mode models -----------------------------------------------------------------
def test_every_quick_model_of_the_chapters_ships_with_the_package():
    # a change to TrainConfig or its synthfaces presets changes the keys: rebuild with bench/prebuild_quick_zoo.py
    from sdft_lite.assets import asset_path
    from sdft_lite.experiments.frontier import FrontierConfig
    quick_frontier = [run for *_, run in FrontierConfig.quick().runs()]    # chapter 10's seven models
    assert len(quick_frontier) == 7
    for spec in zoo.chapter_configs() + quick_frontier:
        assert zoo.has_prebuilt(spec), f"no shipped model for {zoo.key(spec)}"
        state = torch.load(asset_path(zoo.prebuilt_name(spec)), map_location="cpu", weights_only=True)
        assert state["log"].strip()


def test_a_shipped_model_is_installed_into_the_cache_instead_of_training(counted_trainer, monkeypatch):
    spec = TrainConfig.synthfaces_quick(mode="naive")
    assert zoo.is_cached(spec) and not zoo.cached_path(spec).exists()
    model = zoo.finetuned(spec)
    assert counted_trainer == [] and zoo.cached_path(spec).exists()          # nothing trained
    shipped = torch.load(zoo.asset_path(zoo.prebuilt_name(spec)), weights_only=True)["model"]
    for name, value in model.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, shipped[name].float()), name
    assert [r["step"] for r in zoo.training_log(spec)][-1] == spec.steps
    monkeypatch.setenv("FORCE_TRAIN", "1")
    assert not zoo.is_cached(spec)


def test_the_shipped_naive_model_is_what_fine_tuning_makes(monkeypatch, tmp_path):
    """Retrain the shipped quick naive model (about a minute) and compare samples from the same noise: they
    agree up to fp16 storage and float summation order (other CPUs, thread counts)."""
    from sdft_lite.sample import generate
    monkeypatch.setenv("SDFT_LITE_HOME", str(tmp_path))
    monkeypatch.setenv("FORCE_TRAIN", "1")
    spec = TrainConfig.synthfaces_quick(mode="naive")
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))   # as the chapters trained it; twice as fast as one thread
    try:
        fresh = zoo.finetuned(spec)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.delenv("FORCE_TRAIN")
    zoo.cached_path(spec).unlink()
    shipped = zoo.finetuned(spec)
    a, b = (generate(m, 16, 32, "ddim20", seed=0, batch_size=16) for m in (fresh, shipped))
    difference = (a - b).abs().mean().item()
    print(f"mean |fresh - shipped| over 16 DDIM-20 samples: {difference:.5f}")
    assert difference < 0.002   # ≈ 10× the 2e-4 measured on 2 and 1 threads (fp16 storage of the shipped copy)


def test_a_lora_run_is_cached_as_its_merged_plain_unet(counted_trainer):
    """A LoRA fine-tuning is stored merged, so loading it from the cache (as parallel workers do) gives the same
    plain U-Net with guided-diffusion's keys."""
    from sdft_lite.adapters import LoRAConfig, has_lora
    config = dataclasses.replace(TINY, lora=LoRAConfig(rank=2))
    trained = zoo.finetuned(config, device="cpu")
    loaded = zoo.finetuned(config, device="cpu")
    assert counted_trainer == ["naive"] and not has_lora(trained) and not has_lora(loaded)
    source = weights(zoo.source_model())
    assert set(weights(loaded)) == set(source)
    assert all(torch.equal(a, b) for a, b in zip(weights(trained).values(), weights(loaded).values()))


def test_a_shipped_model_samples_its_pinned_values():
    """The shipped quick naive model, loaded as the chapters load it, draws the same 4 DDIM-10 samples as when it
    was pinned (2026-12-02, this project's CPU, 1 and 2 threads: sums 190.6868 and 190.6877). Tolerance: 1e-2 on
    the sum of 12,288 values and 1e-4 on single pixels, about 10x the thread-count difference."""
    from sdft_lite.sample import generate
    from sdft_lite.checkpoint import load_unet
    model = load_unet(zoo.asset_path(zoo.prebuilt_name(TrainConfig.synthfaces_quick(mode="naive"))))
    images = generate(model, 4, 32, "ddim10", seed=0, batch_size=4)
    assert float(images.sum()) == pytest.approx(190.687, abs=1e-2)
    assert float(images.abs().mean()) == pytest.approx(0.2850109, abs=1e-5)
    torch.testing.assert_close(images[0, :, 0, 0], torch.tensor([-0.2584954, -0.5119392, -0.5036210]),
                               rtol=0, atol=1e-4)


def test_another_source_model_enters_the_key_by_content_and_sets_the_layout(tmp_path):
    """``on_source``: a fine-tuning of another source model (e.g. a 64-px one) takes its U-Net layout and is cached
    under a key of that model's content — a copy of the shipped source keeps the shipped key."""
    from sdft_lite.assets import asset_path
    from sdft_lite.checkpoint import save_atomic
    from sdft_lite.train import SYNTHFACES_SOURCE
    from sdft_lite.unet import UNetConfig, UNetModel
    base = TrainConfig.synthfaces_full(mode="naive", loss=SDFTConfig.naive())
    copy = tmp_path / "copy.pt"
    copy.write_bytes(asset_path(SYNTHFACES_SOURCE).read_bytes())
    assert zoo.key(zoo.on_source(base, copy)) == zoo.key(base)

    def written(name, seed):
        torch.manual_seed(seed)
        layout = UNetConfig.tiny().replace(image_size=64, attention_resolutions="32")
        return save_atomic({"model": UNetModel(layout).state_dict(), "unet_config": layout.to_flags()}, tmp_path / name)
    first, same, other = written("a.pt", 0), written("b.pt", 0), written("c.pt", 1)
    config = zoo.on_source(base, first)
    assert config.unet.image_size == 64 and config.unet.num_channels == 32 and config.unet.dropout == base.unet.dropout
    assert config.source_checkpoint == str(first)
    assert zoo.key(config) != zoo.key(base)
    assert zoo.key(config) == zoo.key(zoo.on_source(base, same))      # same content, another file
    assert zoo.key(config) != zoo.key(zoo.on_source(base, other))     # other weights


def test_a_stopped_run_with_checkpoints_continues_to_the_uninterrupted_weights(monkeypatch, tmp_path):
    """With save_every, a fine-tuning stopped by a time limit keeps its checkpoints and the next call continues the
    newest: bit for bit the uninterrupted run's weights, under the same key (save_every is a run field)."""
    monkeypatch.setenv("SDFT_LITE_HOME", str(tmp_path))
    monkeypatch.delenv("FORCE_TRAIN", raising=False)
    config = dataclasses.replace(TINY, steps=4, save_every=1, log_every=1)
    assert zoo.key(config) == zoo.key(dataclasses.replace(config, save_every=0))
    uninterrupted = weights(zoo.finetuned(config, device="cpu"))
    zoo.cached_path(config).unlink()
    starts = []

    class StoppedOnceAtStep2(zoo.Trainer):
        def train_step(self):
            if not getattr(self, "started", False):
                self.started = True
                starts.append(self.step)      # the step this trainer's first step continues from
            result = super().train_step()
            if self.step == 2 and len(starts) == 1:
                self.request_stop()           # what SIGTERM does: finish the step, save, return
            return result

    monkeypatch.setattr(zoo, "Trainer", StoppedOnceAtStep2)
    with pytest.raises(KeyboardInterrupt, match="stopped at step 2 of 4"):
        zoo.finetuned(config, device="cpu")
    assert not zoo.cached_path(config).exists()
    resumed = weights(zoo.finetuned(config, device="cpu"))
    assert starts == [0, 2]                   # the second call began at the stopped run's checkpoint
    assert [entry["step"] for entry in zoo.training_log(config) if "step" in entry] == [1, 2, 3, 4]   # one log
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0)


def test_a_model_being_trained_by_another_process_is_waited_for_then_loaded(counted_trainer):
    """Two scripts sharing the cache asked for the same model at once (the editing bench and the benchmark side by
    side on one GPU): the second waits on the key's lock and loads the first's model instead of training into the
    same run folder (the H200 run that needed this trained SDFT λ = 1 twice, the second wiping the first's log)."""
    zoo.finetuned(TINY, device="cpu")
    stored = zoo.cached_path(TINY).read_bytes()
    zoo.cached_path(TINY).unlink()
    loaded = []
    with zoo.training_lock(TINY):                       # the other process is fine-tuning this key
        waiting = threading.Thread(target=lambda: loaded.append(zoo.finetuned(TINY, device="cpu")))
        waiting.start()
        waiting.join(timeout=2.0)
        assert waiting.is_alive() and not loaded        # it waits instead of training alongside
        zoo.cached_path(TINY).write_bytes(stored)       # the other process finishes and caches its model
    waiting.join(timeout=60.0)
    assert len(loaded) == 1 and counted_trainer == ["naive"]   # loaded, never trained a second time
