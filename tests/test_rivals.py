"""SDFT's rivals (sdft_lite.rivals): each loss against its written-out formula, the trainer with each rival, resume
with a rival on, and method "none" leaving the trainer what it was before the seam.

Tolerances: penalties and losses vs the formulas written out in float64: relative 1e-5 (float32 sums of up to
~10⁶ terms); the pairwise loss vs loops over pairs and vs the released code's calls (CosineSimilarity, Softmax,
KLDivLoss): 1e-6 absolute on a value of ~2e-2 (float32); the pairwise term through two U-Nets: 1e-7 absolute on a
value of ~1e-5 (float32 x̂_0 at t up to 990, where 1/√ᾱ_t ≈ 150 amplifies rounding; measured 2e-8); the Fisher vs
per-sample autograd of the hand-written loss: relative 1e-5 (the same float32 gradients, squared and summed in another
order). Resume and "none" comparisons are bit-exact (torch.equal)."""
import dataclasses
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from helpers import tiny_unet, train_with_the_package_at, write_training_files
from sdft_lite.adapters import LoRAConfig
from sdft_lite.data import ImageSet, batch_indices
from sdft_lite.rivals import RivalConfig, build_regularizer
from sdft_lite.rivals.ewc import EWC, diagonal_fisher
from sdft_lite.rivals.l2sp import L2SP
from sdft_lite.rivals.pairwise_similarity import PairwiseSimilarity, pairwise_similarity_loss
from sdft_lite.rivals.prior_preservation import PriorPreservation, source_samples
from sdft_lite.sample import generate
from sdft_lite.schedule import make_schedule
from sdft_lite.train import ConfigError, TrainConfig, Trainer
from sdft_lite.weighting import P2

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO)}
BEFORE_THE_SEAM = "d8f46bf9ccd5d7ebb6757949015a426233249d30"   # main when the rivals were added
FAST = {"prior": dict(num_prior=6, source_steps="ddim4"), "ewc": dict(fisher_samples=4, source_steps="ddim4"),
        "l2sp": {}, "pairwise": dict(pair_size=3)}
WEIGHTS = {"prior": 0.5, "l2sp": 10.0, "ewc": 1e4, "pairwise": 4.0}

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_training_files(tmp_path_factory.mktemp("rivals"))


def run_config(files, out, rival=None, **changes) -> TrainConfig:
    settings = dict(mode="naive", data_dir=str(files / "images"), out_dir=str(out), source_checkpoint=str(files / "source.pt"),
                    steps=3, save_every=0, progress=False, lr=1e-3, rival=rival or RivalConfig())
    return TrainConfig.tiny(**{**settings, **changes})


def rival(method: str, **changes) -> RivalConfig:
    return RivalConfig(method, WEIGHTS[method], **{**FAST[method], **changes})


def perturbed(params, scale=0.01, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(scale * torch.randn(p.shape, generator=g))


def q_sample_by_hand(schedule, x0, t, noise):
    abar = schedule.alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


# ---- each loss against its formula -----------------------------------------------------------------------------
def test_l2sp_is_half_alpha_times_the_squared_distance_to_the_source():
    model = tiny_unet()
    params = list(model.parameters())
    reg = L2SP(3.0, params)
    source = [p.detach().double().clone() for p in params]
    perturbed(params)
    value = reg(model, None, None, None, None, 0, 0)["l2sp"]
    expected = 3.0 / 2 * sum(float(((p.detach().double() - s) ** 2).sum()) for p, s in zip(params, source))
    assert value.ndim == 0 and float(value.detach()) == pytest.approx(expected, rel=1e-5)
    value.backward()   # ∂/∂θ α/2‖θ − θ_src‖² = α(θ − θ_src)
    for p, s in zip(params, source):
        torch.testing.assert_close(p.grad.double(), 3.0 * (p.detach().double() - s), rtol=1e-5, atol=1e-9)


def test_ewc_is_half_lambda_times_the_fisher_weighted_squared_distance():
    model = tiny_unet()
    params = list(model.parameters())
    g = torch.Generator().manual_seed(2)
    fisher = [torch.rand(p.shape, generator=g) for p in params]
    reg = EWC(5.0, params, fisher)
    source = [p.detach().double().clone() for p in params]
    perturbed(params)
    expected = 5.0 / 2 * sum(float((f.double() * (p.detach().double() - s) ** 2).sum())
                             for p, s, f in zip(params, source, fisher))
    assert float(reg(model, None, None, None, None, 0, 0)["ewc"].detach()) == pytest.approx(expected, rel=1e-5)


def test_the_fisher_is_the_mean_squared_per_sample_gradient_of_the_diffusion_loss():
    """F = mean_n (∂ℓ_n/∂θ)², ℓ_n = mean((ε_n − ε̂(x_t, t_n))²) for a fixed-variance U-Net, (t_n, ε_n) drawn in turn."""
    model, schedule = tiny_unet(learn_sigma=False), make_schedule("linear")
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    fisher = diagonal_fisher(model, images, schedule, torch.Generator().manual_seed(7), P2(gamma=0.0))
    assert model.training   # the mode is restored (the Fisher itself is taken in eval mode)
    g = torch.Generator().manual_seed(7)
    params, expected = list(model.parameters()), [torch.zeros_like(p) for p in model.parameters()]
    model.eval()
    for x0 in images:
        t = torch.randint(0, 1000, (1,), generator=g)
        noise = torch.randn((1, 3, 32, 32), generator=g)
        loss = ((noise - model(q_sample_by_hand(schedule, x0[None], t, noise), t)) ** 2).mean()
        for e, grad in zip(expected, torch.autograd.grad(loss, params)):
            e += grad ** 2 / len(images)
    scale = max(float(e.max()) for e in expected)
    assert scale > 0
    for f, e in zip(fisher, expected):
        torch.testing.assert_close(f, e, rtol=1e-5, atol=1e-5 * scale)


def test_the_prior_term_is_w_times_the_diffusion_loss_on_source_samples():
    model, schedule = tiny_unet(learn_sigma=False), make_schedule("linear")
    samples = source_samples(model, 5, 32, "ddim4", seed=3, device=torch.device("cpu"))
    # the prior set: the model's deterministic DDIM samples, as 8-bit images, the same on every call
    direct = generate(model, 5, 32, "ddim4", seed=3, batch_size=5)
    assert samples.images.dtype == torch.uint8 and samples.images.shape == (5, 3, 32, 32)
    assert (samples.batch(torch.arange(5)) - direct).abs().max() <= 1 / 127.5 + 1e-6
    assert torch.equal(samples.images, source_samples(model, 5, 32, "ddim4", 3, torch.device("cpu")).images)
    model.train()

    reg = PriorPreservation(0.7, samples, schedule, P2(gamma=0.0), batch_size=4, grad_accum=2, world=1, rank=0,
                            seed=11)
    x0 = torch.zeros(2, 3, 32, 32)   # the micro-batch: only its size matters to the prior term
    model.eval()   # no dropout, so the two forward passes agree
    term = reg(model, x0, None, None, torch.Generator().manual_seed(5), step=3, micro=1)["prior"]
    g = torch.Generator().manual_seed(5)
    index = batch_indices(5, 4, 3, 11)[2:4]                       # micro-batch 1 of global batch 3
    images = samples.images[index].float() / 127.5 - 1
    flip = torch.rand(2, generator=g) < 0.5
    images = torch.where(flip.reshape(-1, 1, 1, 1), images.flip(-1), images)
    t = torch.randint(0, 1000, (2,), generator=g)
    noise = torch.randn((2, 3, 32, 32), generator=g)
    expected = 0.7 * ((noise - model(q_sample_by_hand(schedule, images, t, noise), t)) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(term, expected, rtol=1e-5, atol=0)


def pairwise_by_loops(source: torch.Tensor, adapted: torch.Tensor) -> float:
    """1/(n(n−1)) Σ_i Σ_{j≠i} p^src_ij log(p^src_ij / p^ada_ij), p_i = softmax_j cos(x_i, x_j), in float64."""
    def distributions(x):
        flat = x.double().flatten(1)
        rows = []
        for i in range(len(flat)):
            cos = [float(flat[i] @ flat[j] / (flat[i].norm() * flat[j].norm())) for j in range(len(flat)) if j != i]
            total = sum(math.exp(c) for c in cos)
            rows.append([math.exp(c) / total for c in cos])
        return rows
    p_src, p_ada = distributions(source), distributions(adapted)
    n = len(p_src)
    return sum(ps * math.log(ps / pa) for rs, ra in zip(p_src, p_ada) for ps, pa in zip(rs, ra)) / (n * (n - 1))


def test_the_pairwise_loss_is_the_kl_of_softmaxed_cosine_similarities():
    g = torch.Generator().manual_seed(0)
    source = torch.randn(4, 3, 8, 8, generator=g)
    adapted = torch.randn(4, 3, 8, 8, generator=g)
    adapted[1] = adapted[0] + 0.1 * torch.randn(3, 8, 8, generator=g)   # one close pair: peaked rows
    value = pairwise_similarity_loss(source, adapted)
    assert float(value) == pytest.approx(pairwise_by_loops(source, adapted), abs=1e-6) and float(value) > 1e-2
    # the direction matters here: KL(p^ada ‖ p^src) differs by far more than the tolerance
    assert abs(pairwise_by_loops(adapted, source) - float(value)) > 1e-4
    assert float(pairwise_similarity_loss(source, source)) == pytest.approx(0.0, abs=1e-7)
    # the released code's own calls: CosineSimilarity() on [1, D] pairs into [n, n−1] rows, Softmax(dim=1), then
    # KLDivLoss()(log p^ada, p^src)
    def rows(x):
        flat = x.flatten(1)
        sim = [[torch.nn.CosineSimilarity()(flat[i][None], flat[j][None])[0] for j in range(4) if j != i]
               for i in range(4)]
        return torch.nn.Softmax(dim=1)(torch.stack([torch.stack(row) for row in sim]))
    with warnings.catch_warnings():   # torch announces a change of the 'mean' reduction the released code relies on
        warnings.simplefilter("ignore", UserWarning)
        oracle = torch.nn.KLDivLoss()(torch.log(rows(adapted)), rows(source))
    assert float(value) == pytest.approx(float(oracle), abs=1e-6)


def test_the_pairwise_term_compares_x0_predictions_of_both_models_from_the_same_noisy_images():
    schedule = make_schedule("linear")
    student, source = tiny_unet(learn_sigma=False, seed=0).eval(), tiny_unet(learn_sigma=False, seed=1).eval()
    reg = PairwiseSimilarity(4.0, source, schedule, "eps", pair_size=3)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(5, 3, 32, 32, generator=g) * 2 - 1, torch.randn(5, 3, 32, 32, generator=g)
    t = torch.tensor([10, 200, 400, 700, 990])
    term = reg(student, x0, t, noise, torch.Generator().manual_seed(9), 0, 0)["pairwise"]
    pick = torch.randperm(5, generator=torch.Generator().manual_seed(9))[:3]
    x_t = q_sample_by_hand(schedule, x0[pick], t[pick], noise[pick])
    abar = schedule.alphas_cumprod[t[pick]].float().reshape(-1, 1, 1, 1)
    with torch.no_grad():
        x0_hat = {name: (x_t - (1 - abar).sqrt() * model(x_t, t[pick])) / abar.sqrt()
                  for name, model in (("student", student), ("source", source))}
    expected = 4.0 * pairwise_by_loops(x0_hat["source"], x0_hat["student"])
    assert float(term.detach()) == pytest.approx(expected, abs=1e-7) and expected > 1e-5
    term.backward()
    assert all(p.grad is None for p in source.parameters())          # the source stays frozen
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


# ---- the trainer with each rival --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["prior", "l2sp", "ewc", "pairwise"])
def test_the_trainer_adds_and_logs_each_rival(files, tmp_path, method):
    result = Trainer(run_config(files, tmp_path, rival(method)), device="cpu").run()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(method in record for record in log)
    for record in log:
        assert all(math.isfinite(v) for v in record.values())
        parts = record["mse"] + record["vb"] + record["distill"] + record["aux"] + record[method]
        assert record["loss"] == pytest.approx(parts, rel=1e-5)
    assert log[-1][method] > 0 and result[method] == log[-1][method]
    assert json.loads((tmp_path / "config.json").read_text())["rival"]["method"] == method


def test_l2sp_keeps_the_weights_nearer_the_source_than_naive_fine_tuning(files, tmp_path):
    source = {k: v.clone() for k, v in tiny_unet().state_dict().items()}

    def distance(config):
        trainer = Trainer(config, device="cpu")
        for _ in range(4):
            trainer.train_step()
        state = trainer.model.state_dict()
        return sum(float((state[k] - source[k]).double().pow(2).sum()) for k in source) ** 0.5
    naive = distance(run_config(files, tmp_path / "naive"))
    anchored = distance(run_config(files, tmp_path / "l2sp", RivalConfig("l2sp", 1e4)))
    print(f"distance to the source after 4 steps: naive {naive:.4f}, L2-SP {anchored:.4f}")
    assert anchored < 0.8 * naive


@pytest.mark.parametrize("method", ["prior", "ewc", "pairwise"])
def test_a_run_with_a_rival_resumes_bit_identically(files, tmp_path, method):
    mode = "sdft" if method == "pairwise" else "naive"   # pairwise then uses the SDFT teacher as its source
    whole = run_config(files, tmp_path / "whole", rival(method), mode=mode, steps=4, save_every=2)
    Trainer(whole, device="cpu").run()
    first = dataclasses.replace(whole, out_dir=str(tmp_path / "split"), steps=2)
    Trainer(first, device="cpu").run()
    Trainer(dataclasses.replace(first, steps=4), device="cpu").run(resume=True)
    a, b = (torch.load(tmp_path / d / "ckpt_0000004.pt", weights_only=True) for d in ("whole", "split"))
    for key in ("model", "ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    logs = [[json.loads(line) for line in (tmp_path / d / "log.jsonl").read_text().splitlines()]
            for d in ("whole", "split")]
    assert [r[method] for r in logs[0]] == [r[method] for r in logs[1]]


def test_method_none_trains_exactly_as_the_trainer_before_the_seam(files, tmp_path):
    """The same sdft run (dropout on, two micro-batches) with the trainer of the commit before the rivals, run from a
    copy of that commit's package, and with this one: bit-identical weights."""
    settings = dict(mode="sdft", data_dir=str(files / "images"), source_checkpoint=str(files / "source.pt"), steps=3,
                    save_every=3, progress=False, lr=1e-3, grad_accum=2)
    train_with_the_package_at(BEFORE_THE_SEAM, settings, tmp_path / "before", tmp_path)
    Trainer(TrainConfig.tiny(out_dir=str(tmp_path / "now"), **settings), device="cpu").run()
    before, now = (torch.load(tmp_path / d / "ckpt_0000003.pt", weights_only=True) for d in ("before", "now"))
    assert "rival" not in before["config"] and now["config"]["rival"]["method"] == "none"
    for key in ("model", "ema"):
        assert before[key].keys() == now[key].keys()
        assert all(torch.equal(before[key][k], now[key][k]) for k in before[key]), key


@pytest.mark.parametrize("method", ["prior", "l2sp"])   # a second forward pass; a penalty on the weights
def test_two_gloo_processes_with_a_rival_stay_identical(files, tmp_path, method):
    """Under DistributedDataParallel the rival's gradient reaches the all-reduce: the replicas stay bit-identical."""
    out = tmp_path / "ddp"
    extra = {"prior": ["--rival-num-prior", "6", "--rival-source-steps", "ddim4"], "l2sp": []}[method]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sdft_lite.cli", "train", "--preset", "tiny", "--mode", "naive", "--data-dir", str(files / "images"),
           "--out-dir", str(out), "--source-checkpoint", str(files / "source.pt"), "--steps", "3", "--save-every",
           "0", "--batch-size", "4", "--rival-method", method, "--rival-weight", "1.0", *extra]
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2 and all(s["replicas_identical"] and s[method] > 0 for s in summaries)


# ---- the config and the command line ----------------------------------------------------------------------------
def test_the_rival_config_keeps_only_what_its_method_reads():
    assert RivalConfig("none", 3.0, num_prior=7) == RivalConfig()
    assert RivalConfig("l2sp", 2.0, num_prior=7, pair_size=5) == RivalConfig("l2sp", 2.0)
    assert RivalConfig("prior", 1.0, num_prior=7).num_prior == 7
    for bad in (dict(method="dropout"), dict(method="l2sp", weight=-1.0), dict(method="pairwise", pair_size=1),
                dict(method="prior", source_steps="ddim0")):
        with pytest.raises(ValueError):
            RivalConfig(**bad)
    with pytest.raises(ValueError, match="fine-tuning from a source"):
        TrainConfig.tiny(mode="scratch", rival=RivalConfig("l2sp", 1.0))
    with pytest.raises(ValueError, match="without --lora-rank"):
        TrainConfig.tiny(mode="naive", rival=RivalConfig("ewc", 1.0), lora=LoRAConfig(rank=2))
    TrainConfig.tiny(mode="sdft", rival=RivalConfig("prior", 1.0), lora=LoRAConfig(rank=2))   # composes
    assert build_regularizer(TrainConfig.tiny(), None, None, None, torch.device("cpu")) is None


def test_a_pair_size_larger_than_the_micro_batch_is_a_config_error(files, tmp_path):
    with pytest.raises(ConfigError, match="pair-size"):
        Trainer(run_config(files, tmp_path, RivalConfig("pairwise", 1.0, pair_size=3), batch_size=4, grad_accum=2),
                device="cpu")


def test_cli_trains_with_a_rival(files, tmp_path):
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "sdft_lite.cli", "train", "--preset", "tiny", "--mode", "naive",
                           "--data-dir", str(files / "images"), "--source-checkpoint", str(files / "source.pt"),
                           "--out-dir", str(run), "--steps", "2", "--save-every", "2", "--rival-method", "prior",
                           "--rival-weight", "0.5", "--rival-num-prior", "4", "--rival-source-steps", "ddim4"],
                          env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    stored = torch.load(run / "ckpt_0000002.pt", weights_only=True)["config"]["rival"]
    assert stored == dataclasses.asdict(RivalConfig("prior", 0.5, num_prior=4, source_steps="ddim4"))
    assert "prior" in json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    refused = subprocess.run([sys.executable, "-m", "sdft_lite.cli", "train", "--preset", "tiny", "--mode", "naive",
                              "--rival-method", "ewc", "--lora-rank", "2"], env=ENV, capture_output=True, text=True)
    assert refused.returncode == 1 and "without --lora-rank" in refused.stderr and "Traceback" not in refused.stderr
