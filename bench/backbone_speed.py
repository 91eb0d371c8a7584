"""Forward+backward time and peak memory of every backbone (default configs) on one fixed input.

    python bench/backbone_speed.py                    # CPU: batch 2, 32×32×32 voxels × 8 frames (400 ROIs × 160 frames)
    python bench/backbone_speed.py --size 96 --frames 20 --batch-size 1 --device cuda   # the SwiFT default input

Each backbone is built from its default config (only `image_size`/`num_frames`, and Perceiver's `input_type`, are
set to the input). Volume backbones get `(batch, 1, S, S, S, T)`; the ROI backbones (RoiTransformer,
ConnectomeTransformer, Perceiver on ROIs) get `(batch, 400, 20·T)` so that they see as many frames' worth of work as a
short scan.

* **time**: median seconds of one forward + backward (`pooler_output.square().mean()`), all backbones timed in
  alternation (`timing.interleaved_medians`).
* **peak memory**: on CUDA, `torch.cuda.max_memory_allocated` during one forward+backward, less what was allocated
  before it. On CPU, the process's peak resident set size during the first forward+backward (`VmHWM` of
  /proc/self/status, reset through /proc/self/clear_refs just before) less its resident size before it, measured in a
  fresh subprocess per backbone after the model and input are built: activations, gradients and workspace, not the
  weights (tracemalloc cannot see torch's allocator). It counts pages the allocator keeps, so it is an upper bound.
* **GFLOP**: forward+backward FLOPs counted by `torch.utils.flop_counter.FlopCounterMode` (matmuls, attention,
  convolutions; not the GRU's recurrent matmuls nor elementwise work).
* **ratio**: each backbone's time ÷ the fastest backbone's time, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch
from timing import interleaved_medians
from torch.utils.flop_counter import FlopCounterMode

from r2tnet_hf import (
    CnnGruConfig,
    CnnGruModel,
    ConnectomeTransformerConfig,
    ConnectomeTransformerModel,
    PerceiverFmriConfig,
    PerceiverFmriModel,
    ResNet3DConfig,
    ResNet3DModel,
    RoiTransformerConfig,
    RoiTransformerModel,
    Swin4DConfig,
    Swin4DModel,
    Vit4DConfig,
    Vit4DModel,
)

NUM_ROIS = 400


def build(name: str, size: int, frames: int):
    """(model, input kind) of a backbone's default config fitted to the input."""
    volume = {"image_size": [size] * 3, "num_frames": frames}
    if name == "swin4d":
        return Swin4DModel(Swin4DConfig(**volume)), "volume"
    if name == "vit4d":
        return Vit4DModel(Vit4DConfig(**volume)), "volume"
    if name == "resnet3d_18":
        return ResNet3DModel(ResNet3DConfig(layout="r3d_18", **volume)), "volume"
    if name == "resnet3d_34":
        return ResNet3DModel(ResNet3DConfig(layout="r3d_34", **volume)), "volume"
    if name == "cnn_gru":
        return CnnGruModel(CnnGruConfig(**volume)), "volume"
    if name == "perceiver_volume":
        return PerceiverFmriModel(PerceiverFmriConfig(input_type="volume", **volume)), "volume"
    if name == "perceiver_roi":
        return PerceiverFmriModel(PerceiverFmriConfig(num_rois=NUM_ROIS)), "roi"
    if name == "roi_transformer":
        return RoiTransformerModel(RoiTransformerConfig(num_rois=NUM_ROIS)), "roi"
    if name == "connectome_transformer":
        return ConnectomeTransformerModel(ConnectomeTransformerConfig(num_rois=NUM_ROIS)), "roi"
    raise ValueError(name)


NAMES = [
    "swin4d",
    "vit4d",
    "resnet3d_18",
    "resnet3d_34",
    "cnn_gru",
    "perceiver_volume",
    "perceiver_roi",
    "roi_transformer",
    "connectome_transformer",
]


def make_step(model, kind: str, args):
    generator = torch.Generator().manual_seed(0)
    if kind == "volume":
        shape = (args.batch_size, 1, args.size, args.size, args.size, args.frames)
    else:
        shape = (args.batch_size, NUM_ROIS, 20 * args.frames)
    values = torch.randn(shape, generator=generator).to(args.device)
    tr = torch.full((args.batch_size,), 0.8, device=args.device)
    model.to(args.device).train()

    def step():
        model.zero_grad(set_to_none=True)
        model(values, repetition_time=tr).pooler_output.square().mean().backward()

    return step


def measure_memory(args) -> None:
    """Child process: peak memory (MiB) of one forward+backward of `args.only`, printed as JSON."""
    model, kind = build(args.only, args.size, args.frames)
    step = make_step(model, kind, args)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        print(json.dumps({"peak_mib": peak / 2**20}))
        return
    before = resident_kib("VmRSS")
    reset_peak_rss()
    step()
    print(json.dumps({"peak_mib": (resident_kib("VmHWM") - before) / 1024}))


def reset_peak_rss() -> None:
    """Reset the process's peak resident set size (Linux ≥ 4.0: write 5 to /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def resident_kib(field: str) -> int:
    """`VmRSS` (now) or `VmHWM` (peak since the last reset) of this process, in KiB, from /proc/self/status."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no /proc: the lifetime peak, KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32, help="voxels along H, W and D")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)  # child process: memory of one backbone
    parser.add_argument("--models", nargs="*", default=NAMES, choices=NAMES)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.only:
        measure_memory(args)
        return

    models, steps, flops, params = [], [], [], []
    for name in args.models:
        model, kind = build(name, args.size, args.frames)
        step = make_step(model, kind, args)
        with FlopCounterMode(display=False) as counter:
            step()
        models.append(name)
        steps.append(step)
        flops.append(counter.get_total_flops())
        params.append(sum(p.numel() for p in model.parameters()))
    synchronize = torch.cuda.synchronize if args.device == "cuda" else None
    seconds = interleaved_medians(steps, args.repeats, synchronize)

    memory = []
    for name in models:
        command = [sys.executable, __file__, "--only", name, "--size", str(args.size), "--frames", str(args.frames)]
        command += ["--batch-size", str(args.batch_size), "--device", args.device]
        if args.threads:
            command += ["--threads", str(args.threads)]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        memory.append(json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"])

    fastest = min(seconds)
    print(f"device {args.device}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    print(
        f"input: batch {args.batch_size}, volumes 1×{args.size}³×{args.frames}, ROI series {NUM_ROIS}×{20 * args.frames}; "
        f"forward+backward, median of {args.repeats}"
    )
    memory_kind = "CUDA max allocated" if args.device == "cuda" else "peak RSS growth"
    header = f"| backbone | parameters | fwd+bwd (ms) | {memory_kind} (MiB) | GFLOP | GFLOP/s | time ÷ fastest |"
    print(header)
    print("|" + "---|" * 7)
    for name, n, s, m, f in zip(models, params, seconds, memory, flops):
        print(
            f"| {name} | {n / 1e6:.2f}M | {1e3 * s:.1f} | {m:.0f} | {f / 1e9:.2f} | {f / 1e9 / s:.1f} | {s / fastest:.2f} |"
        )


if __name__ == "__main__":
    main()
