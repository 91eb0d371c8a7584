"""R2T-Net contrastive pretraining on `r2tnet convert` shards, with Accelerate.

Flags are the fields of `r2tnet_hf.training.RunConfig` (snake_case); `--config run.yaml` sets them from YAML and flags
override it. The resolved config is saved as OUTPUT/run_config.yaml.

    # 2 CPU processes (gloo), as in the tests
    accelerate launch --config_file scripts/accelerate/cpu.yaml scripts/pretrain.py \\
        --data shards/ --output_dir runs/pretrain --max_steps 200
    # one GPU, bf16
    accelerate launch --config_file scripts/accelerate/single_gpu.yaml scripts/pretrain.py --config pretrain.yaml
    # 8 GPUs (DDP), 2 nodes, or FSDP
    accelerate launch --config_file scripts/accelerate/multi_gpu.yaml scripts/pretrain.py --config pretrain.yaml
    accelerate launch --config_file scripts/accelerate/multi_node.yaml --machine_rank 0 scripts/pretrain.py ...
    accelerate launch --config_file scripts/accelerate/fsdp.yaml scripts/pretrain.py --config pretrain.yaml
    # MnemoDyn, any objective (reconstruct, denoise, masked, jepa), through the same loop
    accelerate launch --config_file scripts/accelerate/cpu.yaml scripts/pretrain.py --model mnemodyn --objective jepa \\
        --data shards/ --output_dir runs/mnemodyn --mnemodyn_config '{"hidden_size": 128, "num_hidden_layers": 4}'
    # resume after an interruption (the data stream continues where it stopped)
    accelerate launch ... scripts/pretrain.py --config pretrain.yaml --resume_from_checkpoint latest
"""

import sys

from r2tnet_hf.training import main

if __name__ == "__main__":
    sys.exit(main("pretrain", description=__doc__))
