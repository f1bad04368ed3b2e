"""Quick mode: SDFT_QUICK decides when it is set; unset, a CPU-only machine runs quick and a GPU machine full."""
import pytest
import torch

from sdft_lite.config import mode_banner, quick_mode


@pytest.mark.parametrize("value, quick", [("1", True), ("true", True), (" YES ", True), ("on", True),
                                          ("0", False), ("false", False), ("no", False), ("off", False)])
def test_the_variable_decides_when_set(monkeypatch, value, quick):
    monkeypatch.setenv("SDFT_QUICK", value)
    for gpu in (True, False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda gpu=gpu: gpu)
        assert quick_mode() is quick


@pytest.mark.parametrize("value", [None, "", "  "])
def test_unset_follows_the_hardware(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("SDFT_QUICK", raising=False)
    else:
        monkeypatch.setenv("SDFT_QUICK", value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert quick_mode() and mode_banner().startswith("mode=quick ")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not quick_mode()
