"""Speed options that must not change what a run computes: the teacher on a side CUDA stream (a no-op without CUDA,
and outside the zoo's cache key), the schedule's tables kept on the trainer's device, a data set held on the device
(on a GPU, bench/bench_speed.py checks that a batch gathered there equals the host's bit for bit)."""
import dataclasses

import pytest
import torch

from helpers import write_training_files
from sdft_lite.data import ImageSet, held_on
from sdft_lite.experiments import zoo
from sdft_lite.train import TrainConfig, Trainer, compile_options

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_training_files(tmp_path_factory.mktemp("speed"))


def run_config(files, out, **changes) -> TrainConfig:
    return TrainConfig.tiny(mode="sdft", data_dir=str(files / "images"), source_checkpoint=str(files / "source.pt"),
                            out_dir=str(out), steps=2, progress=False, **changes)


def test_teacher_stream_is_a_cuda_option_that_changes_nothing_on_a_cpu(files, tmp_path):
    plain = Trainer(run_config(files, tmp_path / "a"), device="cpu")
    streamed = Trainer(run_config(files, tmp_path / "b", teacher_stream=True), device="cpu")
    assert streamed.teacher_stream is None
    for _ in range(2):
        a, b = plain.train_step(), streamed.train_step()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert plain.schedule.alphas_cumprod.device == plain.device


def test_compile_channels_last_asks_inductor_for_its_layout_optimisation():
    import torch._inductor.config as inductor
    assert compile_options(TrainConfig(compile_channels_last=False)) is None   # inductor decides (NCHW here)
    options = compile_options(TrainConfig())
    assert options == {"force_layout_optimization": True}
    assert all(hasattr(inductor, key) for key in options)   # torch.compile rejects an unknown option


@pytest.mark.parametrize("option", ["teacher_stream", "data_on_device", "compile_channels_last"])
def test_speed_options_are_not_part_of_a_models_cache_key(option):
    base = TrainConfig.synthfaces_quick()
    flipped = dataclasses.replace(base, **{option: not getattr(base, option)})
    assert zoo.key(flipped) == zoo.key(base)


def test_a_set_stays_on_the_host_for_a_cpu_or_when_it_would_take_over_a_tenth_of_the_free_gpu_memory():
    data = ImageSet(torch.zeros(10, 3, 8, 8, dtype=torch.uint8), [])   # 1,920 bytes
    assert held_on(data, "cpu") is data
    assert held_on(data, "cuda", free_bytes=19_199) is data   # no CUDA call: the set does not fit, it stays
    assert held_on(data, "cuda:0", free_bytes=1_000, share=1.0) is data


def test_data_on_device_changes_nothing_on_a_cpu(files, tmp_path):
    held = Trainer(run_config(files, tmp_path / "a"), device="cpu")
    kept = Trainer(run_config(files, tmp_path / "b", data_on_device=False), device="cpu")
    assert held.data.images.device.type == "cpu"
    a, b = held.train_step(), kept.train_step()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_batch_follows_the_images_to_their_device():
    images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    data = ImageSet(images, [])
    index = torch.tensor([3, 0, 3])
    assert torch.equal(data.batch(index), images[index].float() / 127.5 - 1.0)
