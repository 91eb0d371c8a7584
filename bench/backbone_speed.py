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
* **GFLOP**: forward+backward FLOPs counted by `torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions;
  not the GRU's recurrent matmuls nor elementwise work), plus, by formula (`bench/flops.py`: 3 × `4·B·H·N²·d`), the
  attention the counter misses (its CPU flash kernel); "of it SDPA" is the FLOPs of the SDPA calls by formula (0 for
  a model that multiplies its attention matrices itself, e.g. SwiFT: the counter sees those).
* **ratio**: each backbone's time ÷ the fastest backbone's time, measured in the same run.

**Against SwiFT** (`--swift DIR`, DIR holding a checkout of Transconnectome/SwiFT's `project/` folder, with monai and
einops importable; SwiFT is not a dependency): two more backbones, `swift`, the reference `SwinTransformer4D` built
with SwiFT's argparse defaults (or, with `--swift-arguments swin4d`, with our defaults' sizes and windows; see
`SWIFT_ARGUMENTS`) at the input size, and `swin4d_swift`, our `Swin4DModel` under
`Swin4DConfig.from_swift` of the same arguments with the reference's weights imported; before timing, their eval
outputs on the input are compared, and after the table the time and memory ratios of `swin4d_swift` to `swift`
are printed:

    python bench/backbone_speed.py --size 96 --frames 20 --batch-size 1 --threads 1 \
        --swift /tmp/swift_ref --models swin4d_swift swift
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys

import torch
from flops import AttentionFlops
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
# SwiFT `SwinTransformer4D` arguments (`img_size` is set from the input), by `--swift-arguments`:
SWIFT_ARGUMENTS = {
    # SwiFT's argparse defaults (project/module/pl_classifier.py): 2×2×2×2 windows of 16 tokens in the first stage
    "swift": dict(
        in_chans=1, embed_dim=24, window_size=[4, 4, 4, 4], first_window_size=[2, 2, 2, 2], patch_size=[6, 6, 6, 1],
        depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], c_multiplier=2, last_layer_full_MSA=False,
    ),
    # as near to our Swin4DConfig defaults as SwiFT goes: embed_dim 36, 4×4×4×4 windows (256 tokens) from the first
    # stage, and a last stage over all of space (in windows of 4 frames: SwiFT cannot attend over all frames)
    "swin4d": dict(
        in_chans=1, embed_dim=36, window_size=[4, 4, 4, 4], first_window_size=[4, 4, 4, 4], patch_size=[6, 6, 6, 1],
        depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], c_multiplier=2, last_layer_full_MSA=True,
    ),
}  # fmt: skip


def load_swift(root: str):
    """SwiFT's `swin4d_transformer_ver7` module from a checkout at `root`, its `project/module/models` loaded as a
    package of its own (as `tests/fixtures/make_swift_fixtures.py` does)."""
    import importlib
    import importlib.util
    from pathlib import Path

    torch.cuda.nvtx.range_push = lambda *args, **kwargs: None  # PatchEmbed's profiler markers (CUDA only)
    torch.cuda.nvtx.range_pop = lambda *args, **kwargs: None
    models = Path(root) / "project" / "module" / "models"
    spec = importlib.util.spec_from_file_location(
        "swift_models", models / "__init__.py", submodule_search_locations=[str(models)]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules["swift_models"] = package
    spec.loader.exec_module(package)
    return importlib.import_module("swift_models.swin4d_transformer_ver7")


def build_swift_pair(root: str, setting: str, size: int, frames: int):
    """(SwiFT's model, our `from_swift` model with its weights imported), seeded alike in every process."""
    from r2tnet_hf.convert import swift
    from r2tnet_hf.convert.common import ReferenceCheckpoint

    arguments = dict(SWIFT_ARGUMENTS[setting], img_size=[size, size, size, frames])
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # SwiFT prints its sizes
        reference = load_swift(root).SwinTransformer4D(
            **arguments, to_float=True, drop_rate=0.0, drop_path_rate=0.0, attn_drop_rate=0.0
        )
    state = {f"model.{key}": value for key, value in reference.state_dict().items()}
    config, ours = swift.convert(ReferenceCheckpoint("bench", state, dict(arguments, attn_drop_rate=0.0)))
    model = Swin4DModel(config)
    model.load_state_dict(ours, strict=True)
    return reference, model


def build(name: str, size: int, frames: int, swift_root: str | None = None, swift_setting: str = "swift"):
    """(model, input kind) of a backbone's default config fitted to the input."""
    if name in ("swift", "swin4d_swift"):
        if swift_root is None:
            raise SystemExit(f"backbone {name} needs --swift DIR (a checkout of SwiFT)")
        reference, ours = build_swift_pair(swift_root, swift_setting, size, frames)
        return (reference, "swift") if name == "swift" else (ours, "volume")
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
SWIFT_NAMES = ["swin4d_swift", "swift"]


def make_step(model, kind: str, args):
    generator = torch.Generator().manual_seed(0)
    if kind in ("volume", "swift"):
        shape = (args.batch_size, 1, args.size, args.size, args.size, args.frames)
    else:
        shape = (args.batch_size, NUM_ROIS, 20 * args.frames)
    values = torch.randn(shape, generator=generator).to(args.device)
    tr = torch.full((args.batch_size,), 0.8, device=args.device)
    model.to(args.device).train()

    def step():
        model.zero_grad(set_to_none=True)
        if kind == "swift":  # (B, C, h, w, d, t) tokens; their mean over tokens is what SwiFT's heads pool
            pooled = model(values).flatten(2).mean(-1)
        else:
            pooled = model(values, repetition_time=tr).pooler_output
        pooled.square().mean().backward()

    return step


def measure_memory(args) -> None:
    """Child process: peak memory (MiB) of one forward+backward of `args.only`, printed as JSON."""
    model, kind = build(args.only, args.size, args.frames, args.swift, args.swift_arguments)
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
    parser.add_argument("--models", nargs="*", default=NAMES, choices=NAMES + SWIFT_NAMES)
    parser.add_argument("--swift", default=None, help="a SwiFT checkout (holding project/): compare against SwiFT")
    parser.add_argument(
        "--swift-arguments", default="swift", choices=sorted(SWIFT_ARGUMENTS), help="hyperparameters of the pair"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.only:
        measure_memory(args)
        return

    if args.swift and args.models == NAMES:
        args.models = NAMES + SWIFT_NAMES
    if args.swift:
        print(f"SwiFT vs swin4d_swift, eval outputs: largest absolute difference {swift_difference(args):.2e}")
    models, steps, flops, attention_flops, params = [], [], [], [], []
    for name in args.models:
        model, kind = build(name, args.size, args.frames, args.swift, args.swift_arguments)
        step = make_step(model, kind, args)
        with FlopCounterMode(display=False) as counter, AttentionFlops(counter) as attention:
            step()
        models.append(name)
        steps.append(step)
        flops.append(counter.get_total_flops() + 3 * attention.missed_forward_flops)  # fwd+bwd: 3× the forward
        attention_flops.append(3 * attention.forward_flops)
        params.append(sum(p.numel() for p in model.parameters()))
    synchronize = torch.cuda.synchronize if args.device == "cuda" else None
    seconds = interleaved_medians(steps, args.repeats, synchronize)

    memory = []
    for name in models:
        command = [sys.executable, __file__, "--only", name, "--size", str(args.size), "--frames", str(args.frames)]
        command += ["--batch-size", str(args.batch_size), "--device", args.device]
        if args.swift:
            command += ["--swift", args.swift, "--swift-arguments", args.swift_arguments]
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
    header = f"| backbone | parameters | fwd+bwd (ms) | {memory_kind} (MiB) | GFLOP | of it SDPA | GFLOP/s | time ÷ fastest |"
    print(header)
    print("|" + "---|" * 8)
    for name, n, s, m, f, a in zip(models, params, seconds, memory, flops, attention_flops):
        print(
            f"| {name} | {n / 1e6:.2f}M | {1e3 * s:.1f} | {m:.0f} | {f / 1e9:.2f} | {a / 1e9:.2f} | {f / 1e9 / s:.1f} "
            f"| {s / fastest:.2f} |"
        )
    if "swift" in models and "swin4d_swift" in models:
        ours, reference = models.index("swin4d_swift"), models.index("swift")
        print(
            f"swin4d_swift ÷ swift ({args.swift_arguments} hyperparameters, same weights): time {seconds[ours] / seconds[reference]:.2f}, "
            f"{memory_kind} {memory[ours] / memory[reference]:.2f}"
        )


def swift_difference(args) -> float:
    """Largest absolute difference of the eval outputs of SwiFT and of `swin4d_swift` on the bench input."""
    reference, ours = build_swift_pair(args.swift, args.swift_arguments, args.size, args.frames)
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(args.batch_size, 1, args.size, args.size, args.size, args.frames, generator=generator)
    with torch.no_grad():
        expected = reference.eval()(values)
        found = ours.eval()(values).last_hidden_state
    expected = expected.permute(0, 2, 3, 4, 5, 1).reshape(found.shape)  # (B, C, h, w, d, t) → (B, tokens, C)
    return (found - expected).abs().max().item()


if __name__ == "__main__":
    main()
