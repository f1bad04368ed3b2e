#!/usr/bin/env bash
# The command line end to end on the 256-px FFHQ-P2 ADM (training issue, item 8; editing issue, "256 px on a GPU"):
#   1. render SynthFaces folders at 256 px (portraits to fine-tune on, photos to translate and edit);
#   2. write a random-init FFHQ-config "source" checkpoint (guided-diffusion format: a bare state dict);
#   3. `train --preset metfaces` (the paper's settings) for STEPS steps: img/s and peak memory from log.jsonl;
#   4. the T4 setting (batch 4 × 4 accumulation, gradient checkpointing, fp16 + grad scaler) under a 15 GB cap;
#   5. `sample` DDIM-40; `train-dse`; `translate` with SDEdit, EGSDE and DDIB; `edit` (Asyrp, classifier direction);
#   6. `evaluate` on the SDEdit pairs.
# The models are minutes old, so the images are blobs: this measures cost and checks that every command runs at
# the paper's size, not quality. Each command's wall time goes to $W/timings.tsv, its output to $W/logs/.
# CPU smoke run: W=/tmp/cli_smoke SIZE=32 UNET=tiny STEPS=4 N=16 CAP_GB=0 bash bench/cli_256.sh
set -uo pipefail
W=${W:-/tmp/cli256}; SIZE=${SIZE:-256}; UNET=${UNET:-ffhq256}; STEPS=${STEPS:-300}; N=${N:-256}
CAP_GB=${CAP_GB:-15}; PRECISION=${PRECISION:-bf16}; T4_STEPS=${T4_STEPS:-20}; EDIT_EPOCHS=${EDIT_EPOCHS:-1}; DSE_STEPS=${DSE_STEPS:-200}
CLI="python3 -m sdft_lite.cli"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
mkdir -p "$W/logs" "$W/models"
printf "step\tseconds\texit\n" > "$W/timings.tsv"
failed=0

run() {   # run NAME COMMAND...: time it, keep its output, go on after a failure
  local name=$1; shift
  local start=$SECONDS
  "$@" > "$W/logs/$name.log" 2>&1
  local rc=$?
  printf "%s\t%d\t%d\n" "$name" "$((SECONDS - start))" "$rc" >> "$W/timings.tsv"
  if [ $rc -ne 0 ]; then failed=1; echo "FAILED: $name (exit $rc)"; tail -n 15 "$W/logs/$name.log"; fi
  return 0
}

run render_portraits $CLI synthfaces render --domain limited --n "$N" --size "$SIZE" "$W/data/portraits"
run render_photos $CLI synthfaces render --domain source --n 64 --size "$SIZE" --split test "$W/data/photos"
run write_source python3 - "$UNET" "$W/models/source.pt" <<'EOF'
import sys, torch
from sdft_lite.unet import UNetConfig, UNetModel
torch.manual_seed(0)
model = UNetModel(getattr(UNetConfig, sys.argv[1])())
torch.save(model.state_dict(), sys.argv[2])   # the layout of guided-diffusion's ffhq_p2.pt
print(f"{sum(p.numel() for p in model.parameters()):,} parameters -> {sys.argv[2]}")
EOF

COMMON=(--preset metfaces --unet-preset "$UNET" --data-dir "$W/data/portraits" --source-checkpoint "$W/models/source.pt"
        --progress false --sample-num 16)
CKPT="$W/runs/metfaces/ckpt_$(printf %07d "$STEPS").pt"
run train_metfaces $CLI train "${COMMON[@]}" --out-dir "$W/runs/metfaces" --steps "$STEPS" --save-every "$STEPS" \
    --sample-every "$STEPS" --log-every 25
run train_resume $CLI train "${COMMON[@]}" --out-dir "$W/runs/metfaces" --steps "$((STEPS + 10))" \
    --save-every "$((STEPS + 10))" --sample-every 0 --log-every 5 --resume
T4=(--batch-size 16 --grad-accum 4 --use-checkpoint true --precision fp16)
if [ "$CAP_GB" != 0 ]; then
  run train_t4_setting python3 bench/memory_cap.py "$CAP_GB" train "${COMMON[@]}" "${T4[@]}" \
      --out-dir "$W/runs/t4" --steps "$T4_STEPS" --save-every "$T4_STEPS" --sample-every 0 --log-every 5
fi
run sample_ddim40 $CLI sample "$CKPT" --out "$W/samples" --num 64 --batch 64 --steps ddim40 --precision "$PRECISION"
run sample_ddim40_fp32 $CLI sample "$CKPT" --out "$W/samples_fp32" --num 64 --batch 64 --steps ddim40 --precision fp32
run train_dse $CLI train-dse "$W/data/photos" "$W/data/portraits" --out "$W/models/dse.pt" --size "$SIZE" \
    --steps "$DSE_STEPS" --batch 32
for method in sdedit egsde ddib; do
  run "translate_$method" $CLI translate --method "$method" --model "$CKPT" --source-model "$W/models/source.pt" \
      --dse "$W/models/dse.pt" --input "$W/data/photos" --out "$W/translate/$method" --n 16 --batch 16
done
run edit_asyrp $CLI edit --model "$CKPT" --direction classifier:expression:0:1 \
    --classifier sdft_lite/assets/synthfaces/classifier.pt --input "$W/data/photos" --out "$W/edit" \
    --n-train 8 --epochs "$EDIT_EPOCHS" --n 8 --batch 8
run evaluate_sdedit $CLI evaluate --pairs "$W/translate/sdedit/pairs" --metrics psnr ssim --out "$W/evaluate_sdedit.json"
cat "$W/timings.tsv"
exit $failed
