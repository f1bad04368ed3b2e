"""Where a benchmark's numbers came from: the code's commit, recorded beside every result file."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path


def commit() -> str:
    """The code's commit: $SDFT_LITE_COMMIT when set (a device copy of the tree may carry a stale .git), else git's
    HEAD of the repository this file is in, else "unknown"."""
    if os.environ.get("SDFT_LITE_COMMIT"):
        return os.environ["SDFT_LITE_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
