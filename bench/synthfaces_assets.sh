#!/usr/bin/env bash
# Train the shipped SynthFaces CPU-demo source model (demo32, 1.37M params) on one GPU, then a short naive vs SDFT
# fine-tune of it on the limited target as a sanity check, with DDIM-40 sample grids from shared noise.
# (The instruments are trained with: sdft-lite synthfaces train-instruments --size 32 --steps 3000 --out DIR.)
# Run from the repo root; OUT = where results go.
set -euo pipefail
OUT=${OUT:-bench/out}
STEPS=${STEPS:-3500}
mkdir -p "$OUT"
CLI="python3 -m sdft_lite.cli"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
start=$(date +%s)
$CLI synthfaces render --domain limited --size 32 /tmp/limited32 > /dev/null &
$CLI synthfaces train-source --unet-preset demo32 --steps "$STEPS" --batch 256 --num-images 30000 \
  --out "$OUT/source_demo32.pt" > "$OUT/source_demo32.log" 2>&1
wait
echo "source trained in $(( $(date +%s) - start )) s"
for mode in naive sdft; do
  $CLI train --mode $mode --data-dir /tmp/limited32 --out-dir /tmp/ft_$mode --source-checkpoint "$OUT/source_demo32.pt" \
    --unet-preset demo32 --dropout 0.1 --steps 300 --batch-size 64 --lr 3e-4 --ema-rate 0.999 --sample-every 0 \
    --save-every 300 --lambda-distill 1.0 --lambda-aux 1.0 --progress false > "$OUT/ft_$mode.log" 2>&1 &
done
wait
$CLI sample "$OUT/source_demo32.pt" --out /tmp/s_source --num 64 --steps ddim40 && cp /tmp/s_source/grid.png "$OUT/grid_source.png"
for mode in naive sdft; do $CLI sample /tmp/ft_$mode/ckpt_0000300.pt --out /tmp/s_$mode --num 64 --steps ddim40; cp /tmp/s_$mode/grid.png "$OUT/grid_ft_$mode.png"; done
echo "all done in $(( $(date +%s) - start )) s"
