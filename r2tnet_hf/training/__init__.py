"""Training: losses, the run config, the Accelerate loop (pretraining and fine-tuning) and checkpointing."""

from .config import RunConfig, build_argument_parser, config_from_args, load_run_config
from .losses import gather_with_grad, nt_xent_loss

__all__ = [
    "RunConfig",
    "build_argument_parser",
    "config_from_args",
    "gather_with_grad",
    "load_run_config",
    "main",
    "nt_xent_loss",
]


def main(task: str, argv: list[str] | None = None, description: str | None = None) -> int:
    """Entry point of scripts/pretrain.py and scripts/finetune.py: flags → RunConfig → the loop.

    Bad input (a missing shard folder, a bad key in the YAML, a scan the processor refuses) prints one line and returns
    2, without a traceback.
    """
    import os
    import sys

    from ..errors import expected_failure_line

    parser = build_argument_parser(description or f"r2tnet {task}")
    try:
        config = config_from_args(parser, argv)
        import time

        from .loop import run
        from .summary import summary_lines

        if not config.progress:
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # the "Writing model shards" bars of every save
        started = time.perf_counter()
        run(config, task)
        if int(os.environ.get("RANK", "0")) == 0:
            print("\n".join(summary_lines(config.output_dir, task, time.perf_counter() - started)))
    except Exception as error:  # expected failures are one line (exit 2); anything else is a bug: its traceback
        line = expected_failure_line(error)
        if line is None:
            raise
        # Under `accelerate launch` every rank meets the same bad input: rank 0 alone says so (the launcher then
        # reports that the ranks exited with status 2).
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{task}: error: {line}", file=sys.stderr)
        return 2
    return 0
