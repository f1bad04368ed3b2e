"""The fast DDIM path (``generate(..., compile=..., cuda_graph=...)``) and the device-resident schedule behind it.

Tolerances: the restructured eager loop (tables on the device, timesteps made before the loop) equals the plain
loop bit for bit; a compiled step (inductor's CPU code, which fuses and reorders float32 arithmetic) is within
1e-5 absolute of the eager samples in [−1, 1]. CUDA graphs cannot run on a CPU: only their refusal is tested
here; bench/bench_speed.py compares graphed and eager samples on the GPU."""
import pytest
import torch

from helpers import ToyEpsModel, tiny_unet
from sdft_lite.diffusion import call_model
from sdft_lite.sample import generate
from sdft_lite.sampling import ddim_sample, ddim_step
from sdft_lite.schedule import TABLES, extract, make_schedule, respace

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py
SCHEDULE = respace(make_schedule("linear"), "ddim10")


def plain_ddim(model, x: torch.Tensor, schedule) -> torch.Tensor:
    """DDIM as the sampler was written before the fast path: a CPU schedule, t made inside the loop."""
    with torch.no_grad():
        for k in range(len(schedule) - 1, -1, -1):
            t = torch.full((x.shape[0],), k, dtype=torch.long)
            x, _ = ddim_step(schedule, call_model(model, x, schedule, t), x, t)
    return x


def test_moved_schedule_tables_are_the_cpu_tables_bit_for_bit():
    fresh = respace(make_schedule("linear"), "ddim10")
    moved = fresh.to("cpu")
    t = torch.arange(len(fresh))
    for name in TABLES:
        assert torch.equal(getattr(moved, name), getattr(fresh, name))
        assert getattr(moved, name) is getattr(moved, name)         # computed once, then kept
        assert torch.equal(extract(getattr(moved, name), t, 4), extract(getattr(fresh, name), t, 4))
    assert torch.equal(moved.timesteps, fresh.timesteps) and len(moved) == len(fresh)


def test_the_eager_loop_is_the_plain_loop_bit_for_bit():
    model = tiny_unet(0).eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ddim_sample(model, x, SCHEDULE), plain_ddim(model, x, SCHEDULE))


def test_a_compiled_step_matches_eager_and_compiles_once(monkeypatch):
    model = ToyEpsModel()
    eager = generate(model, 6, 16, "ddim10", batch_size=3)
    torch._dynamo.reset()
    compiled = generate(model, 6, 16, "ddim10", batch_size=3, compile="default")
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)   # a later call reuses the step
    assert torch.equal(generate(model, 6, 16, "ddim10", batch_size=3, compile="default"), compiled)


def test_reduce_overhead_runs_and_matches_eager():
    """On a CPU torch skips CUDA graphs; the loop (step marks, copies out) is the one a GPU runs."""
    model = ToyEpsModel(seed=1)
    torch._dynamo.reset()
    fast = generate(model, 4, 16, "ddim10", batch_size=4, compile="reduce-overhead")
    torch.testing.assert_close(fast, generate(model, 4, 16, "ddim10", batch_size=4), atol=1e-5, rtol=0)


def test_what_the_fast_path_refuses():
    model = ToyEpsModel()
    with pytest.raises(ValueError, match="CUDA"):
        generate(model, 2, 16, "ddim10", cuda_graph=True)
    with pytest.raises(ValueError, match="eta"):
        generate(model, 2, 16, "ddim10", eta=0.5, compile="default")
    with pytest.raises(ValueError, match="ddim"):
        generate(model, 2, 16, "ddim10", sampler="ancestral", compile="default")
