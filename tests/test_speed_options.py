"""Speed options that must not change what a run computes: the teacher on a side CUDA stream (a no-op without CUDA,
and outside the zoo's cache key), the schedule's tables kept on the trainer's device, a data set held on the device."""
import dataclasses

import pytest
import torch

from helpers import write_training_files
from sdft_lite.data import ImageSet
from sdft_lite.experiments import zoo
from sdft_lite.train import TrainConfig, Trainer

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


def test_teacher_stream_is_not_part_of_a_models_cache_key():
    base = TrainConfig.synthfaces_quick()
    assert zoo.key(dataclasses.replace(base, teacher_stream=True)) == zoo.key(base)


def test_a_batch_follows_the_images_to_their_device():
    images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    data = ImageSet(images, [])
    index = torch.tensor([3, 0, 3])
    assert torch.equal(data.batch(index), images[index].float() / 127.5 - 1.0)
