"""Time and peak memory of one MnemoDyn layer, ours against a pure-torch rendering of the reference's, in one run.

    python bench/mnemodyn_memory.py            # the reference's script/orion.sh layer: V=450, 490 frames, batch 8
    python bench/mnemodyn_memory.py --batch 2  # smaller

Both run the same weights on the same window (forward and backward) in separate subprocesses, so each peak
resident memory is its own. The rendering follows the reference's `ORionSeq.forward`: the `(batch, time, V, k)`
field is built whole and contracted with einsum, and each level's segment convolution is `torch.func.vmap` over
segments. Ours (`MnemoDynLayer`) contracts `contraction_chunk_size` frames at a time with recomputation in the
backward pass and runs the segment convolutions as one grouped convolution. The script checks that the outputs and
the input gradients agree and prints both timings, both peaks and the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def build(args):
    from types import SimpleNamespace

    from r2tnet_hf import MnemoDynConfig
    from r2tnet_hf.models.mnemodyn.modeling_mnemodyn import MnemoDynLayer, MnemoDynPreTrainedModel

    torch.manual_seed(0)
    config = MnemoDynConfig(contraction_chunk_size=args.chunk_size)  # the defaults are orion.sh's
    layer = MnemoDynLayer(config, 0)
    MnemoDynPreTrainedModel._init_weights(SimpleNamespace(config=config), layer)  # not applied recursively:
    for module in layer.modules():  # the model's initialisation of each submodule, without a whole MnemoDynModel
        MnemoDynPreTrainedModel._init_weights(SimpleNamespace(config=config), module)
    values = torch.randn(args.batch, config.num_frames, config.num_rois, generator=torch.Generator().manual_seed(1))
    return config, layer, values


def reference_forward(layer, values, step):
    """The reference layer's computation, as its code does it (whole field, vmap over segments)."""
    from r2tnet_hf.models.mnemodyn.modeling_mnemodyn import fit_length
    from r2tnet_hf.models.mnemodyn.wavelets import idwt, wavedec

    config, act = layer.config, layer.activation
    batch, frames, rois = values.shape
    control = layer.control(values, step)
    z = act(layer.bottleneck(act(layer.input_projection(values))))
    field = act(layer.feature_expansion(z)).view(batch, frames, rois, config.latent_size)
    v = torch.einsum("blkD,blDo->blko", field.transpose(2, 3), control.unsqueeze(-1)).squeeze(-1).transpose(1, 2)
    approximations, details = wavedec(v, config.wavelet_levels, config.wavelet)
    current = approximations[-1]
    for dense in layer.dense_layers:
        current = act(dense(current))
    k = v.shape[1]
    for level in reversed(range(config.wavelet_levels)):
        conv = layer.level_convs[level]
        x = torch.cat([details[level], approximations[level]], dim=1)
        length = x.shape[-1]
        per = -(-length // conv.segments)
        x = F.pad(x, (0, per * conv.segments - length)).view(batch, 2 * k, conv.segments, per).permute(2, 0, 1, 3)
        out = torch.func.vmap(lambda xr, w, b: F.conv1d(xr, w, b, padding="same"))(x, conv.weight, conv.bias)
        mixed = act(out.permute(1, 2, 0, 3).reshape(batch, 2 * k, -1)[..., :length])
        current = fit_length(current, length)
        current = idwt(mixed[:, k:] + current, mixed[:, :k], config.wavelet)
    out = layer.output_projection(fit_length(current, frames).transpose(1, 2))
    return values + out if config.use_residual else out


def worker(args):
    torch.set_num_threads(args.threads)
    config, layer, values = build(args)
    values.requires_grad_(True)
    step = torch.full((values.shape[0],), 0.72)
    forward = (
        (lambda: layer(values, step)) if args.worker == "ours" else (lambda: reference_forward(layer, values, step))
    )
    start = time.perf_counter()
    out = forward()
    out.square().mean().backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB (ru_maxrss is KiB on Linux)
    branch = (out - values).detach() if config.use_residual else out.detach()  # the layer's own output, not x + it
    torch.save({"out": branch[:, ::7], "grad": values.grad[:, ::7]}, args.dump)
    print(json.dumps({"seconds": seconds, "peak_gib": peak}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=["ours", "reference"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dump", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    import tempfile

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in ("reference", "ours"):
            dump = f"{folder}/{name}.pt"
            command = [sys.executable, __file__, "--worker", name, "--dump", dump, "--batch", str(args.batch),
                       "--chunk-size", str(args.chunk_size), "--threads", str(args.threads)]  # fmt: skip
            line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[name] = {**json.loads(line), **torch.load(dump, weights_only=True)}
    ours, ref = results["ours"], results["reference"]
    out_diff = (ours["out"] - ref["out"]).abs().max().item() / ref["out"].abs().max().item()
    grad_diff = (ours["grad"] - ref["grad"]).abs().max().item() / ref["grad"].abs().max().item()
    print(f"MnemoDyn layer at orion.sh (V=450, k=300, 490 frames, 5 levels), batch {args.batch}, float32, CPU, "
          f"{args.threads} threads, forward + backward")  # fmt: skip
    for name in ("reference", "ours"):
        print(f"  {name:9s}: {results[name]['seconds']:7.2f} s   peak RSS {results[name]['peak_gib']:6.2f} GiB")
    print(
        f"  time ratio reference/ours {ref['seconds'] / ours['seconds']:.2f}, "
        f"memory ratio reference/ours {ref['peak_gib'] / ours['peak_gib']:.2f}"
    )
    print(
        f"  equal outputs: the layer branch's max relative diff {out_diff:.2e}; input gradients: max relative diff {grad_diff:.2e}"
    )


if __name__ == "__main__":
    main()
