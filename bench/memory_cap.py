"""Run an ``sdft-lite`` command with the GPU's memory capped, to check that a setting fits a smaller card.

    python bench/memory_cap.py 15 train --preset metfaces --batch-size 16 --grad-accum 4 --use-checkpoint true ...

caps this process at 15 GiB of the GPU (``torch.cuda.set_per_process_memory_fraction``): an allocation past the
cap fails with an out-of-memory error, as it would on a 15 GB Colab T4. Speed under the cap is still the big GPU's.
"""
from __future__ import annotations

import sys

import torch

from sdft_lite.cli import main


def cap_gpu_memory(gib: float) -> None:
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, gib * 2**30 / total))
    print(f"GPU memory capped at {gib:g} GiB of {total / 2**30:.1f} GiB", flush=True)


if __name__ == "__main__":
    if torch.cuda.is_available():
        cap_gpu_memory(float(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
