"""Shared test fixtures: small deterministic stand-in networks and the guided-diffusion oracle."""
import warnings

import pytest

from tests.helpers import ToyEpsModel

warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture
def toy_model():
    return ToyEpsModel()


@pytest.fixture
def gd():
    """guided-diffusion-sdk's diffusion modules (the reference implementation used as oracle)."""
    from guided_diffusion import gaussian_diffusion, respace, script_util
    return gaussian_diffusion, respace, script_util
