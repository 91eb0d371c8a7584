#!/usr/bin/env bash
# Device check for a lent GPU machine: bf16 pretraining through `accelerate launch` with
# scripts/accelerate/single_gpu.yaml, then with scripts/accelerate/fsdp.yaml (FSDP2 over every GPU), on a synthetic
# cohort written by `r2tnet synth` and `r2tnet convert`; then bench/mfu.py prints each run's MFU and the ratio of
# their throughputs. Every step is capped (`timeout`); the whole check is sized for under 8 minutes on one H200.
#
#   bash bench/gpu_check.sh                              # on the GPU machine, from the repository root
#   PYTHON=.venv/bin/python OUT=/tmp/check bash bench/gpu_check.sh
#   SUBJECTS=8 ROIS=16 FRAMES=64 STEPS=4 HIDDEN=32 LAYERS=1 bash bench/gpu_check.sh   # on a CPU: exercises each step
#
# On a CPU the same steps run (single_gpu.yaml as one process; fsdp.yaml as 2 gloo processes, FSDP2 by the loop),
# bf16 included, which is how this script is checked without a GPU. Exit status: the first failing step's.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
OUT=${OUT:-$(mktemp -d /tmp/r2tnet-gpu-check.XXXXXX)}
SUBJECTS=${SUBJECTS:-48}
ROIS=${ROIS:-200}
FRAMES=${FRAMES:-1200}
STEPS=${STEPS:-60}
HIDDEN=${HIDDEN:-512}
LAYERS=${LAYERS:-8}
SPB=${SPB:-16}  # subjects per batch per process: 2 × SPB views
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=${HF_HOME:-$OUT/hf}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    GPUS=$(nvidia-smi -L | wc -l)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
    GPUS=2  # no GPU: 2 gloo processes
    echo "no GPU found: running the steps on the CPU (2 processes for FSDP)"
fi
"$PYTHON" -c "import torch, accelerate, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'accelerate', accelerate.__version__, 'transformers', transformers.__version__)"
echo "output: $OUT"

step() {  # step NAME SECONDS COMMAND...: time-capped, timed, logged to OUT/NAME.log (its tail shown on failure)
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "== $name"
    if ! timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; then
        tail -n 40 "$OUT/$name.log"
        echo "$name: failed (log: $OUT/$name.log)"
        exit 1
    fi
    echo "   $name: $((SECONDS - start)) s"
}

step synth 90 "$PYTHON" -m r2tnet_hf.cli synth --subjects "$SUBJECTS" --rois "$ROIS" --frames "$FRAMES" \
    --out "$OUT/cohort" --seed 0
step convert 90 "$PYTHON" -m r2tnet_hf.cli convert "$OUT/cohort/manifest.tsv" --out "$OUT/shards" --quiet

BACKBONE=$(printf '{"hidden_size": %d, "num_hidden_layers": %d, "num_attention_heads": %d, "intermediate_size": %d}' \
    "$HIDDEN" "$LAYERS" "$(((HIDDEN + 63) / 64))" "$((4 * HIDDEN))")
TRAIN=(
    scripts/pretrain.py --data "$OUT/shards" --backbone roi_transformer --backbone_config "$BACKBONE"
    --window_length "$FRAMES" --min_window_length none --subjects_per_batch "$SPB"
    --max_steps "$STEPS" --logging_steps "$(((STEPS + 5) / 6))" --eval_steps "$STEPS" --save_steps "$STEPS"
    --validation_segment_length none --mixed_precision bf16 --progress false
)
LAUNCH=("$PYTHON" -m accelerate.commands.launch)
step single_gpu 150 "${LAUNCH[@]}" --config_file scripts/accelerate/single_gpu.yaml "${TRAIN[@]}" --output_dir "$OUT/single_gpu"
step fsdp 150 "${LAUNCH[@]}" --config_file scripts/accelerate/fsdp.yaml --num_processes "$GPUS" \
    "${TRAIN[@]}" --output_dir "$OUT/fsdp"
grep -q "distributed_type: FSDP" "$OUT/fsdp/run_config.yaml" || { echo "fsdp: the run did not shard"; exit 1; }
ls "$OUT/fsdp/checkpoints/"*/pytorch_model_fsdp_0/.metadata >/dev/null

step mfu 90 "$PYTHON" bench/mfu.py "$OUT/single_gpu" "$OUT/fsdp"
cat "$OUT/mfu.log"
echo "gpu_check: done in $SECONDS s"
