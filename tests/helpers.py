"""Small deterministic stand-ins used across the tests, and a loader for the book's tool scripts."""
import importlib.util
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    """Import book/tools/<name>.py (a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location(f"book_tools_{name}", REPO_ROOT / "book" / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


class ToyEpsModel(torch.nn.Module):
    """A deterministic, t-dependent stand-in for a U-Net: x: [B, 3, H, W], t: [B] → [B, 6, H, W] (or 3).

    Its ε output is large enough at big t that x̂_0 leaves [−1, 1], so clipping matters in the tests.
    """

    def __init__(self, learn_sigma: bool = True, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.learn_sigma = learn_sigma
        self.mix = torch.nn.Parameter(torch.randn(3, 3, generator=g) * 0.5)
        self.bias = torch.nn.Parameter(torch.randn(3, generator=g) * 0.1)

    def forward(self, x, t):
        phase = (t.float() / 1000.0).reshape(-1, 1, 1, 1)
        eps = torch.einsum("oc,bchw->bohw", self.mix, x) * torch.cos(3 * phase) + self.bias.reshape(1, 3, 1, 1) + phase
        if not self.learn_sigma:
            return eps
        v = torch.tanh(x * (1 + phase)) * 0.9
        return torch.cat([eps, v], dim=1)


def randomise_zero_init(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Re-draw the zero-initialised convs (out, proj_out, each ResBlock's last conv) and perturb GroupNorm affines,
    so that every parameter changes the output."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
            module.reset_parameters()
        if isinstance(module, torch.nn.GroupNorm):
            torch.nn.init.normal_(module.weight, 1.0, 0.1)
            torch.nn.init.normal_(module.bias, 0.0, 0.1)
    return model


def tiny_unet(seed: int = 0, **changes) -> torch.nn.Module:
    """The tiny U-Net (``UNetConfig.tiny()`` with ``changes``) built under ``seed``, its zero-initialised weights
    re-drawn (normal, sd 0.02) so that every weight matters; in train mode."""
    from sdft_lite.unet import UNetConfig, UNetModel
    torch.manual_seed(seed)
    model = UNetModel(UNetConfig.tiny().replace(**changes))
    for p in model.parameters():
        if p.ndim > 1 and p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.02)
    return model


def write_training_files(root: Path, images: int = 8) -> Path:
    """``root/images`` (``images`` random PNGs) and ``root/source.pt`` (``tiny_unet(0)``'s state dict): what a
    tiny naive or SDFT run reads."""
    from sdft_lite.checkpoint import save_atomic
    write_random_images(root / "images", images)
    save_atomic(tiny_unet(0).state_dict(), root / "source.pt")
    return root


def write_random_images(folder: Path, n: int, size: int = 32, seed: int = 0) -> Path:
    """``n`` uniform-noise RGB PNGs in ``folder`` (created): a training set whose content does not matter."""
    import numpy as np
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder



def train_with_the_package_at(commit: str, settings: dict, out_dir: Path, work: Path) -> None:
    """Run ``Trainer(TrainConfig.tiny(out_dir=out_dir, **settings), device="cpu").run()`` with the sdft_lite of
    an earlier ``commit`` (extracted with git archive into ``work``), in a subprocess: for tests that a change
    leaves training bit-identical. Skips the test when git or the commit is not available."""
    import shutil
    import subprocess

    import pytest
    if shutil.which("git") is None or subprocess.run(["git", "-C", str(REPO_ROOT), "cat-file", "-e", commit],
                                                     capture_output=True).returncode:
        pytest.skip("needs the repository's git history")
    package = work / f"package_{commit[:7]}"
    package.mkdir(exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", commit, "sdft_lite"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(package)], input=archive, check=True)
    script = ("import sys, torch; torch.set_num_threads(1)\n"
              "from sdft_lite.train import TrainConfig, Trainer\n"
              f"Trainer(TrainConfig.tiny(out_dir=sys.argv[1], **{settings!r}), device='cpu').run()\n")
    subprocess.run([sys.executable, "-c", script, str(out_dir)], check=True, capture_output=True, cwd=work,
                   env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(package)})
