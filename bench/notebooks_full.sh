#!/usr/bin/env bash
# Execute chapters 1–8 in full mode on one GPU (not CI), two streams at once: the seed-0 models the chapters share
# are fine-tuned in parallel (bench/prewarm_zoo.py) while chapters 1–3 run; then chapter 6 (Asyrp, minutes of
# Δh training) runs beside chapters 4, 5, 7 and 8. Executed copies go to OUT/{a,b,c}; their outputs are kept.
#   bash bench/notebooks_full.sh OUT
# Needs nbclient + ipykernel (on the GPU machine: carried as wheels, see the device notes in README).
set -uo pipefail
out=$1
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
python3 bench/prewarm_zoo.py --workers 10 > "$out/prewarm.log" 2>&1 &
prewarm=$!
python3 bench/execute_notebooks.py notebooks/01_*.ipynb notebooks/02_*.ipynb notebooks/03_*.ipynb --out "$out/a"
wait $prewarm
python3 bench/execute_notebooks.py notebooks/06_*.ipynb --out "$out/b" &
editing=$!
python3 bench/execute_notebooks.py notebooks/04_*.ipynb notebooks/05_*.ipynb notebooks/07_*.ipynb \
    notebooks/08_*.ipynb --out "$out/c"
wait $editing
