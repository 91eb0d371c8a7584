"""Peak memory and time of one MnemoDyn layer (forward + backward): the naive field contraction, which builds the
`(batch, time, hidden, k)` field, against the package's chunked low-rank contraction, in the same run.

    python bench/mnemodyn_memory.py                       # batch 8, V = hidden = 450, T = 490, k = 128, rank 16
    python bench/mnemodyn_memory.py --frames 1200 --control-channels 64

The state is kept in ROI space (hidden = V), as in the draft. Peak memory is the rise of the peak resident set size
(`ru_maxrss`) of a fresh subprocess during one forward + backward pass, after the layer and inputs exist; times are
medians of forward + backward in this process, the two variants alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.timing import interleaved_medians
from r2tnet_hf import MnemoDynConfig
from r2tnet_hf.models.mnemodyn.controls import naive_field_contraction
from r2tnet_hf.models.mnemodyn.modeling_mnemodyn import MnemoDynLayer, MnemoDynModel


def build(args, variant: str):
    torch.manual_seed(0)
    config = MnemoDynConfig(
        num_rois=args.rois,
        hidden_size=args.rois,
        num_hidden_layers=1,
        control_channels=args.control_channels,
        field_hidden_size=args.field_hidden_size,
        field_rank=args.rank,
        contraction_chunk_size=args.chunk_size,
        wavelet_levels=3,
    )
    layer = MnemoDynModel(config).layers[0]  # initialised as in the model
    assert isinstance(layer, MnemoDynLayer)
    if variant == "naive":
        field = layer.field
        field.forward = lambda hidden, control: naive_field_contraction(
            field.code(hidden), control, field.expand.weight, field.expand.bias
        )
    frames = args.frames + (-args.frames) % config.frame_multiple
    hidden = torch.randn(args.batch, frames, args.rois, requires_grad=True)
    control = torch.randn(args.batch, frames, config.num_control_channels)
    mask = torch.ones(args.batch, frames, dtype=torch.bool)
    lengths = mask.sum(dim=1)

    def step():
        layer.zero_grad(set_to_none=True)
        hidden.grad = None
        layer(hidden, control, mask, lengths).square().mean().backward()

    return step


def peak_in_subprocess(args, variant: str) -> float:
    """MiB by which one forward + backward raises the peak RSS of a fresh process."""
    command = [sys.executable, __file__, "--child", variant] + [
        f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items() if name != "child"
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rois", type=int, default=450)
    parser.add_argument("--frames", type=int, default=490)
    parser.add_argument("--control-channels", type=int, default=128)
    parser.add_argument("--field-hidden-size", type=int, default=128)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["naive", "chunked"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        step = build(args, args.child)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"peak_mib": (after - before) / 1024}))  # ru_maxrss is in KiB on Linux
        return

    field_mib = args.batch * args.frames * args.rois * args.control_channels * 4 / 2**20
    print(
        f"one MnemoDyn layer, forward + backward: batch {args.batch}, V = hidden = {args.rois}, T = {args.frames}, "
        f"k = {args.control_channels}, rank {args.rank}, chunk {args.chunk_size}, float32, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"the (batch, time, hidden, k) field alone: {field_mib:.0f} MiB")
    peaks = {variant: peak_in_subprocess(args, variant) for variant in ("naive", "chunked")}
    times = interleaved_medians([build(args, "naive"), build(args, "chunked")], repeats=args.repeats)
    for (variant, peak), seconds in zip(peaks.items(), times):
        print(f"  {variant:8s} peak +{peak:8.0f} MiB   {seconds * 1000:8.0f} ms")
    print(f"memory ratio naive / chunked: {peaks['naive'] / max(peaks['chunked'], 1e-9):.1f}x")
    print(f"time ratio chunked / naive: {times[1] / times[0]:.2f}")


if __name__ == "__main__":
    main()
