"""The nbval sanitizers map run-to-run variations to one text and leave the science alone.

nbval reads `sanitize.cfg` with its own parser and applies each regex in file order; these tests do the same
through nbval's function, so a rule that stops matching (or matches too much) fails here, not in CI's
notebook run.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from nbval.plugin import get_sanitize_patterns

SANITIZE_CFG = Path(__file__).resolve().parent / "sanitize.cfg"
PATTERNS = get_sanitize_patterns(SANITIZE_CFG.read_text(encoding="utf-8"))


def sanitize(text: str) -> str:
    for regex, replace in PATTERNS:
        text = re.sub(regex, replace, text)
    return text


def test_every_rule_is_parsed():
    sections = re.findall(r"^\[(\w+)\]$", SANITIZE_CFG.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert sections and len(PATTERNS) == len(sections)


@pytest.mark.parametrize("first, second", [
    ("WALL_TIME mode=quick hardware=CPU x86_64 x2 seconds=6.4",
     "WALL_TIME mode=full hardware=NVIDIA H100 80GB HBM3 seconds=812.0"),
    ("<matplotlib.lines.Line2D at 0x7f3a2c1d9e50>", "<matplotlib.lines.Line2D at 0x7f00aa11bb22>"),
    ("/tmp/ipykernel_4242/3141592.py:3: UserWarning: x", "/tmp/ipykernel_77/27.py:3: UserWarning: x"),
    ("/work/main/.venv/lib/python3.11/site-packages/torch/nn.py:5: Warning",
     "/usr/local/lib/python3.10/dist-packages/torch/nn.py:5: Warning"),
    ("saved to /home/alice/.cache/sdft_lite/x.pt", "saved to /content/.cache/sdft_lite/x.pt"),
    ("started 2025-03-01 12:30:45.123", "started 2026-11-24T22:51:07"),
    ("kernel pid=1234", "kernel pid=98765"),
    ("tensor([1.], device='cuda:0')", "tensor([1.], device='cpu')"),
    ("device(type='cuda', index=0)", "device(type='cpu')"),
    ("100%|██████████| 40/40 [00:03<00:00, 12.31it/s]",
     "100%|██████████| 40/40 [00:01<00:00, 30.02it/s]"),
    ("sampling at 6.3 img/s", "sampling at 35.2 img/s"),
    ("fine-tuning took 12.5 s", "fine-tuning took 3 min"),
])
def test_volatile_parts_sanitize_to_the_same_text(first, second):
    assert sanitize(first) == sanitize(second)


@pytest.mark.parametrize("text", [
    "index 499: alpha_bar = 7.858724e-02   SNR = 8.528994e-02",
    "x: torch.Size([4, 3, 32, 32])",
    "93,563,910 parameters",
    "t = 500 of 1000 steps",
])
def test_machine_independent_values_are_kept(text):
    assert sanitize(text) == text
