#!/usr/bin/env bash
# Execute chapter notebooks in full mode on one GPU (not CI): fine-tune every seed-0 model the chapters use in
# parallel first (they share the zoo's cache), then run the notebooks in order, keeping their outputs.
#   bash bench/notebooks_full.sh OUT_DIR notebooks/0[1-4]*.ipynb
# Needs nbclient + ipykernel (on the GPU machine: carried as wheels, see the device notes in README).
set -uo pipefail
out=$1; shift
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
python3 bench/prewarm_zoo.py --workers 10 | grep -v "^fine-tuned "
python3 bench/execute_notebooks.py "$@" --out "$out"
