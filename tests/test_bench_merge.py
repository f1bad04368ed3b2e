"""Merging the GPU reproduction's per-call summaries: pooled mean and sd equal those of all values at once."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from merge_synthfaces_results import finetune_config, pooled, pooled_tree  # noqa: E402

from sdft_lite.train import TrainConfig  # noqa: E402


def summary(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else None,
            "n": len(values)}


@pytest.mark.parametrize("sizes", [(1, 2), (2, 3, 1), (4,)])
def test_pooled_equals_the_statistics_of_all_values(sizes):
    rng = np.random.default_rng(sum(sizes))
    groups = [rng.normal(size=n) for n in sizes]
    everything = np.concatenate(groups)
    result = pooled([summary(g) for g in groups])
    assert result["n"] == len(everything)
    assert result["mean"] == pytest.approx(everything.mean(), rel=1e-12)
    assert result["sd"] == pytest.approx(everything.std(ddof=1), rel=1e-12)


def test_pooled_tree_walks_nested_summaries():
    a, b = np.array([0.1]), np.array([0.3, 0.5])
    tree = pooled_tree([{"naive": {"PSNR": summary(a)}}, {"naive": {"PSNR": summary(b)}}])
    assert tree["naive"]["PSNR"]["mean"] == pytest.approx(0.3) and tree["naive"]["PSNR"]["n"] == 3


def test_the_merged_config_keeps_the_targets_smile_share():
    """A run on the target with 2% smiling portraits stays that run once merged (its models are other zoo entries);
    files written before the share existed read as 0."""
    stored = TrainConfig.synthfaces_full(target_smile_share=0.02, seed=1).to_dict()
    assert finetune_config(stored).target_smile_share == 0.02
    del stored["target_smile_share"]
    assert finetune_config(stored).target_smile_share == 0.0
