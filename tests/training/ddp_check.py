"""Launched by tests/training/test_training.py with `accelerate launch` (2 CPU processes): pretrain a few steps, then
write this rank's world size, parameter checksum and the subjects it trained on."""

import hashlib
import json
import sys
from pathlib import Path

from r2tnet_hf.training import build_argument_parser, config_from_args
from r2tnet_hf.training.loop import pretrain

if __name__ == "__main__":
    config = config_from_args(build_argument_parser("ddp check"), sys.argv[1:])
    result = pretrain(config)
    rank, world = result.process_index, result.num_processes  # as the gloo process group reported them
    digest = hashlib.sha256()
    for name, parameter in sorted(result.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    out = Path(config.output_dir) / f"rank{rank}.json"
    out.write_text(json.dumps({"world_size": world, "sha256": digest.hexdigest()}))
