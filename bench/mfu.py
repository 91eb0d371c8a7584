"""Model FLOPs utilisation (MFU) of finished pretraining runs, from what the training loop logged.

    python bench/mfu.py RUN [RUN ...]                  # e.g. the two runs of bench/gpu_check.sh
    python bench/mfu.py RUN --peak-tflops 989          # the device's dense peak, when its name is not in PEAK_TFLOPS

For each run folder (`scripts/pretrain.py --output_dir RUN`, ROI data): the training FLOPs of one view (forward +
backward of the encoder that made the signatures, counted by `torch.utils.flop_counter.FlopCounterMode` on the run's
own model from RUN/last/, at the run's window length and precision) times the loop's `samples_per_second` (views per
second per process, the median of the logged intervals after the first) is the achieved FLOP/s of one device. MFU is
that ÷ the device's dense peak (`PEAK_TFLOPS`, by device name). In the same process a dense square matmul in the
run's dtype is timed: the ratio achieved ÷ matmul FLOP/s is printed as well (it needs no datasheet).

Views must all have the run's window length (`--min_window_length none`, scans at least that long), or the FLOPs per
view are overestimated. On a CPU the flash-attention kernel is not counted by FlopCounterMode (see
/work/shared/ENVIRONMENT.md): CPU figures undercount attention.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import yaml
from timing import interleaved_medians
from torch.utils.flop_counter import FlopCounterMode

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' datasheets (SXM parts).
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0, "A10G": 125.0}


def device_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)


def run_figures(run: Path, device: torch.device) -> dict:
    """Throughput logged by the loop, and the counted training FLOPs of one view of the run's model."""
    import r2tnet_hf  # noqa: F401  (registers the model classes)
    from r2tnet_hf.models.r2tnet import R2TNetForContrastivePretraining

    config = yaml.safe_load((run / "run_config.yaml").read_text())
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    intervals = [e for e in events if "samples_per_second" in e]
    intervals = intervals[1:] or intervals  # the first interval holds the warm-up
    speed = statistics.median(e["samples_per_second"] for e in intervals)

    model = R2TNetForContrastivePretraining.from_pretrained(run / "last").r2tnet.to(device).train()
    processor = json.loads((run / "last" / "preprocessor_config.json").read_text())
    views = 2 * int(config["subjects_per_batch"])
    values = torch.randn(views, int(processor["num_rois"]), int(config["window_length"]), device=device)
    # the run's `--mixed_precision` flag (`accelerate launch`'s choice is not recorded: pass the flag, as gpu_check does)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.get("mixed_precision"), torch.float32)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            signature = model(fmri_values=values, repetition_time=torch.full((views,), 0.72, device=device)).signature
        signature.float().sum().backward()
    return {
        "run": run.name,
        "distributed_type": config.get("distributed_type"),
        "processes": config.get("num_processes"),
        "dtype": dtype,
        "views_per_second": speed,
        "flops_per_view": counter.get_total_flops() / views,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int = 8192, repeats: int = 10) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    (seconds,) = interleaved_medians([lambda: a @ b], repeats, sync)
    return 2 * size**3 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense peak of one device (default: by name)")
    parser.add_argument("--matmul-size", type=int, default=None, help="default: 8192 on a GPU, 1024 on a CPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    device = torch.device(args.device)
    peak = args.peak_tflops or device_peak(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {name}, torch {torch.__version__}, dense peak {peak or 'unknown'} TFLOP/s")
    figures = [run_figures(run, device) for run in args.runs]
    size = args.matmul_size or (8192 if device.type == "cuda" else 1024)
    rates = {dtype: matmul_rate(device, dtype, size) for dtype in {f["dtype"] for f in figures}}
    for f in figures:
        achieved = f["flops_per_view"] * f["views_per_second"]
        mfu = f"{achieved / (peak * 1e12):.3f}" if peak else "n/a (pass --peak-tflops)"
        print(
            f"{f['run']}: {f['distributed_type']} × {f['processes']} process(es), {str(f['dtype']).removeprefix('torch.')}, "
            f"{f['parameters']:,} parameters; {f['flops_per_view'] / 1e9:.3g} GFLOP per view (fwd+bwd), "
            f"{f['views_per_second']:.1f} views/s per process = {achieved / 1e12:.3g} TFLOP/s per device; "
            f"MFU {mfu}; ÷ dense {size}² matmul ({rates[f['dtype']] / 1e12:.2f} TFLOP/s): "
            f"{achieved / rates[f['dtype']]:.3f}"
        )
    if len(figures) > 1:
        base = figures[0]
        for f in figures[1:]:
            print(f"ratio views/s {f['run']} ÷ {base['run']}: {f['views_per_second'] / base['views_per_second']:.2f}")


if __name__ == "__main__":
    main()
