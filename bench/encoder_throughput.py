"""RoiTransformer forward FLOP/s against dense-matmul FLOP/s, measured in the same process.

    python bench/encoder_throughput.py                      # 400 ROIs × 1200 frames, TR 0.72 s, batch 8, CPU
    python bench/encoder_throughput.py --device cuda --dtype bfloat16 --batch-size 64

FLOPs of the forward pass are counted by `torch.utils.flop_counter.FlopCounterMode` (matmuls; the elementwise work is
not counted, so it shows up as lost throughput), plus the attention FLOPs by formula (`4·B·H·N²·d` per attention,
`bench/flops.py`) for the SDPA calls the counter misses (it has no formula for the CPU flash kernel); both parts are
printed. The reference is a square matmul of
`--matmul-size` in the same dtype, timed in alternation with the model (medians). The ratio is model FLOP/s ÷ matmul FLOP/s; the goal on CPU
is ≥ 0.5.
"""

from __future__ import annotations

import argparse

import torch
from flops import AttentionFlops
from timing import interleaved_medians
from torch.utils.flop_counter import FlopCounterMode

from r2tnet_hf import RoiTransformerConfig, RoiTransformerModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-rois", type=int, default=400)
    parser.add_argument("--frames", type=int, default=1200)
    parser.add_argument("--repetition-time", type=float, default=0.72)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=8)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    config = RoiTransformerConfig(
        num_rois=args.num_rois,
        patch_size=args.patch_size,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=max(1, args.hidden_size // 64),
        intermediate_size=4 * args.hidden_size,
    )
    model = RoiTransformerModel(config).to(args.device, dtype).eval()
    values = torch.randn(args.batch_size, args.num_rois, args.frames, device=args.device, dtype=dtype)
    tr = torch.full((args.batch_size,), args.repetition_time, device=args.device)

    def forward():
        with torch.inference_mode():
            model(values, repetition_time=tr)

    with FlopCounterMode(display=False) as counter, AttentionFlops(counter) as attention:
        forward()
    counted_flops, added_flops = counter.get_total_flops(), attention.missed_forward_flops
    model_flops = counted_flops + added_flops

    n = args.matmul_size
    a = torch.randn(n, n, device=args.device, dtype=dtype)
    b = torch.randn(n, n, device=args.device, dtype=dtype)

    def matmul():
        with torch.inference_mode():
            a @ b

    model_seconds, matmul_seconds = interleaved_medians(
        [forward, matmul], args.repeats, torch.cuda.synchronize if args.device == "cuda" else None
    )
    matmul_flops = 2 * n**3

    model_rate = model_flops / model_seconds
    matmul_rate = matmul_flops / matmul_seconds
    tokens = -(-args.frames // args.patch_size)
    print(f"device {args.device}, {args.dtype}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    print(
        f"RoiTransformer: {args.num_rois} ROIs × {args.frames} frames (TR {args.repetition_time} s), batch "
        f"{args.batch_size}, {tokens} tokens, hidden {args.hidden_size}, {args.num_layers} layers, "
        f"{model.num_parameters():,} parameters"
    )
    print(
        f"  forward FLOPs: {counted_flops / 1e9:.2f} GFLOP counted (FlopCounterMode) + {added_flops / 1e9:.2f} GFLOP "
        f"of attention by formula, not counted (all attention by formula: {attention.forward_flops / 1e9:.2f} GFLOP)"
    )
    print(
        f"  forward: {model_flops / 1e9:.2f} GFLOP in {model_seconds * 1e3:.1f} ms = {model_rate / 1e9:.1f} GFLOP/s"
        f" ({args.batch_size / model_seconds:.1f} scans/s)"
    )
    print(
        f"dense matmul {n}×{n}: {matmul_flops / 1e9:.2f} GFLOP in {matmul_seconds * 1e3:.1f} ms = {matmul_rate / 1e9:.1f} GFLOP/s"
    )
    print(f"ratio (model FLOP/s ÷ matmul FLOP/s): {model_rate / matmul_rate:.2f}")


if __name__ == "__main__":
    main()
