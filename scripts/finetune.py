"""Fine-tune a phenotype head (regression or classification) on `r2tnet convert` shards, with Accelerate.

The encoder comes from `--init_from` (an R2T-Net folder such as OUTPUT/best/ of a pretraining run); it is frozen (a
linear probe) unless `--freeze_backbone false`. Targets are phenotype columns of the manifest (`--target age`).
Subjects are split into train/validation/test; validation picks OUTPUT/best/, and the test split is evaluated once at
the end into OUTPUT/test_results.json, beside a ridge-on-FC baseline for ROI regression.

    accelerate launch --config_file scripts/accelerate/cpu.yaml scripts/finetune.py \\
        --data shards/ --init_from runs/pretrain/best --target score --output_dir runs/finetune
    accelerate launch --config_file scripts/accelerate/single_gpu.yaml scripts/finetune.py --config finetune.yaml \\
        --problem_type single_label_classification --target DX_GROUP --freeze_backbone false
"""

import sys

from r2tnet_hf.training import main

if __name__ == "__main__":
    sys.exit(main("finetune", description=__doc__))
