"""Launched by tests/training/test_training.py and test_fsdp.py with `accelerate launch` (2 CPU processes): pretrain a
few steps, then write this rank's world size, a checksum of the parameters it holds, and how much of them it holds
(FSDP2 keeps a shard of each tensor per rank, DDP a full copy)."""

import hashlib
import json
import sys
from pathlib import Path

from torch.distributed.tensor import DTensor

from r2tnet_hf.training import build_argument_parser, config_from_args
from r2tnet_hf.training.loop import pretrain

if __name__ == "__main__":
    config = config_from_args(build_argument_parser("ddp check"), sys.argv[1:])
    result = pretrain(config)
    rank, world = result.process_index, result.num_processes  # as the gloo process group reported them
    digest = hashlib.sha256()
    local = {}
    for name, parameter in sorted(result.model.state_dict().items()):
        held = parameter.to_local() if isinstance(parameter, DTensor) else parameter
        local[name] = (held.numel(), parameter.numel(), isinstance(parameter, DTensor))
        digest.update(name.encode())
        digest.update(held.detach().cpu().contiguous().numpy().tobytes())
    report = {
        "world_size": world,
        "sha256": digest.hexdigest(),
        "model_class": type(result.model).__name__,
        "sharded_tensors": sum(sharded for _, _, sharded in local.values()),
        "tensors": len(local),
        "local_numel": sum(held for held, _, _ in local.values()),
        "numel": sum(full for _, full, _ in local.values()),
    }
    (Path(config.output_dir) / f"rank{rank}.json").write_text(json.dumps(report))
