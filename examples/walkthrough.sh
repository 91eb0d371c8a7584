#!/usr/bin/env bash
# Your own data, end to end: files → manifest → shards → pretraining → identification beside the FC baselines →
# signatures → a publishable folder → AutoModel.from_pretrained. Three folders, as researchers have them: ROI time
# series in TSVs (BIDS derivatives), 4-D NIfTI volumes with a label atlas, and dense CIFTI with a .dlabel.nii.
#
#     bash examples/walkthrough.sh [OUT]        # default OUT: runs/walkthrough; about a minute per folder on 2 cores
#     KINDS="tsv nifti" bash examples/walkthrough.sh     # some of the three folders only
#
# Replace `python examples/make_own_data.py ...` by your own folders; everything after it is what you would type.
# On GPUs, `python scripts/pretrain.py` becomes
# `accelerate launch --config_file scripts/accelerate/multi_gpu.yaml scripts/pretrain.py` with the same flags.
set -euo pipefail
OUT="${1:-runs/walkthrough}"
SUBJECTS="${SUBJECTS:-8}"
STEPS="${STEPS:-20}"
KINDS="${KINDS:-tsv nifti cifti}"
cd "$(dirname "$0")/.."

python examples/make_own_data.py --out "$OUT/data" --subjects "$SUBJECTS"

for kind in $KINDS; do
    echo "== $kind"
    data="$OUT/data/$kind" work="$OUT/$kind"
    rm -rf "$work"
    atlas=()
    [ "$kind" = nifti ] && atlas=(--atlas "$data/atlas-toy_dseg.nii.gz")
    [ "$kind" = cifti ] && atlas=(--atlas "$data/atlas-toy.dlabel.nii")

    # 1. one row per scan; the TSVs carry no TR, so it is given here
    r2tnet manifest "$data" --out "$work/manifest.tsv" --repetition-time 0.8
    # 2. validated, parcellated (volumes and dense CIFTI, with the atlas), z-scored Parquet shards
    r2tnet convert "$work/manifest.tsv" --out "$work/shards" "${atlas[@]}" --quiet
    # 3. people, not files, go to train / validation / test
    r2tnet split "$work/manifest.tsv" --out "$work/splits.json" --fractions 0.5 0.25 0.25
    # 4. rest⇄task contrastive pretraining; validation chooses best/, the test people are scored once
    python scripts/pretrain.py --data "$work/shards" --output_dir "$work/run" --splits "$work/splits.json" \
        --max_steps "$STEPS" --window_length 64 --subjects_per_batch 4 --progress false
    # 5. identification of the test people between sessions, beside the classical FC baselines fitted on train
    r2tnet fingerprint --model "$work/run/best" --manifest "$work/manifest.tsv" --splits "$work/splits.json" \
        --output "$work/fingerprint" --quiet
    # 6. signatures straight from the files: the processor parcellates with the atlas `convert` recorded (TSVs: the TR)
    r2tnet signatures --model "$work/run/best" --input "$data" --repetition-time 0.8 \
        --output "$work/signatures.parquet" --quiet
    # 7. the folder `publish` would upload, with its model card; drop --dry-run to upload (hf auth login first)
    r2tnet publish "$work/run" --repo-id "my-lab/r2tnet-$kind" --dry-run "$work/publish"
    # 8. load it as anyone would
    python - "$work/publish" "$work/signatures.parquet" <<'EOF'
import sys

import pyarrow.parquet as pq
from transformers import AutoFeatureExtractor, AutoModel

import r2tnet_hf  # noqa: F401  (registers the Auto classes)

model = AutoModel.from_pretrained(sys.argv[1]).eval()
processor = AutoFeatureExtractor.from_pretrained(sys.argv[1])
table = pq.read_table(sys.argv[2])
print(f"loaded {type(model).__name__} ({processor.num_rois} ROIs, atlas {processor.atlas}); "
      f"{table.num_rows} signatures of {len(table['signature'][0])} dimensions")
EOF
done
echo "walkthrough done: $OUT"
