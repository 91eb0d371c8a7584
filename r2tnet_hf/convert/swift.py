"""SwiFT reference checkpoints (`SwinTransformer4D`, in a Lightning `.ckpt` of `LitClassifier` or bare) → `Swin4DModel`.

The config is `Swin4DConfig.from_swift(...)`, which computes exactly as SwiFT's `SwinTransformer4D.forward` (see
`r2tnet_hf.models.swin4d.modeling_swin4d` for what matches and what differs). Its architecture is read from the
tensor shapes (stages, blocks per stage, `embed_dim`, `c_multiplier`, `mlp_ratio`, qkv bias, patch norm, the token
grid and frames of the position tables); what shapes cannot tell comes from the checkpoint's hyperparameters (the
names of SwiFT's argparse: `patch_size` or `img_size`, `num_heads`, `window_size`, `first_window_size`,
`last_layer_full_MSA`, `attn_drop_rate`) or from `config_overrides` (our config's field names: `patch_size`,
`num_heads`, `window_size`, `first_window_size`, `global_attention_last_stage`, ...), and the import fails naming
what is missing. Hyperparameters that shapes also give (`img_size`, `in_chans`, `embed_dim`, `depths`,
`c_multiplier`) are checked against them.

Tensor names (after the Lightning module's `model.` prefix), each mapped by name:

- `patch_embed.fc.{weight,bias}` → `embeddings.projection.*` (weight columns permuted from SwiFT's (voxel, channel)
  order to our (channel, voxel) order); `patch_embed.norm.*` (only with `patch_norm`) → `embeddings.norm.*`
- `pos_embeds.{i}.pos_embed` `(1, C, h, w, d, 1)` → `stages.{i}.position_embedding.spatial` `(h, w, d, C)`;
  `pos_embeds.{i}.time_embed` `(1, C, 1, 1, 1, T)` → `stages.{i}.position_embedding.temporal` `(T, C)`
- `layers.{i}.blocks.{j}.norm1.*` → `stages.{i}.blocks.{j}.attention_norm.*`; `attn.qkv.*` split by rows into
  `attention.query.*` (the first third) and `attention.key_value.*` (the rest, keys then values); `attn.proj.*` →
  `attention.output.*`; `norm2.*` → `mlp_norm.*`; `mlp.linear1.*` / `mlp.linear2.*` → `mlp.fc1.*` / `mlp.fc2.*`
- `layers.{i}.downsample.{norm,reduction}.*` → `stages.{i}.merging.{norm,reduction}.*`

Dropped, by these exact names and nothing else: `norm.weight`, `norm.bias` (SwiFT's `SwinTransformer4D` builds this
final norm but its `forward` never applies it) and, in a Lightning checkpoint, the heads of `LitClassifier`, which
are not part of `SwinTransformer4D`: `output_head.head.{weight,bias}` (`clf_mlp`, `reg_mlp`),
`output_head.hidden.{weight,bias}` (`clf_mlp_v2`), `output_head.fc1.weight` and
`output_head.bn1.{weight,bias,running_mean,running_var,num_batches_tracked}` (`emb_mlp`). Any other tensor is
reported as unmapped.
"""

from __future__ import annotations

import math
import re

import torch
from huggingface_hub.errors import StrictDataclassError

from ..models.swin4d import Swin4DConfig, Swin4DModel
from .common import ReferenceCheckpoint, WeightImportError, map_state_dict

NAME = "SwiFT"
REPOSITORY = "https://github.com/Transconnectome/SwiFT"
LICENSE = "apache-2.0"
REFERENCE = "project/module/models/swin4d_transformer_ver7.py @ 0b07cb156d77a7de33078c8f6fe3ddffa7b5ae9c"
MODEL_CLASS = Swin4DModel

LIGHTNING_PREFIX = "model."
DROPPED_TENSORS = ("norm.weight", "norm.bias")  # built, never applied by SwinTransformer4D.forward
DROPPED_HEAD_TENSORS = tuple(
    f"output_head.{name}"
    for name in (
        "head.weight", "head.bias", "hidden.weight", "hidden.bias", "fc1.weight", "bn1.weight", "bn1.bias",
        "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
    )
)  # fmt: skip
QKV_PARTS = ("query", "key_value")  # the two pieces a fused `attn.qkv` tensor is split into, before mapping

# our config field (as in config_overrides) → SwiFT hyperparameter, for what shapes cannot tell
_NEEDED = {
    "patch_size": "patch_size (or img_size)",
    "num_heads": "num_heads",
    "window_size": "window_size",
    "first_window_size": "first_window_size",
    "global_attention_last_stage": "last_layer_full_MSA",
}
# SwiFT's name → ours, of the parts of a block `layers.{i}.blocks.{j}` (each with a weight and a bias)
_BLOCK_PARTS = {
    "norm1": "attention_norm",
    "attn.proj": "attention.output",
    "norm2": "mlp_norm",
    "mlp.linear1": "mlp.fc1",
    "mlp.linear2": "mlp.fc2",
}
_RENAMES = [
    (r"patch_embed\.fc\.(weight|bias)", r"embeddings.projection.\1"),
    (r"patch_embed\.norm\.(weight|bias)", r"embeddings.norm.\1"),
    (r"pos_embeds\.(\d+)\.pos_embed", r"stages.\1.position_embedding.spatial"),
    (r"pos_embeds\.(\d+)\.time_embed", r"stages.\1.position_embedding.temporal"),
    (r"layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)\[(query|key_value)\]", r"stages.\1.blocks.\2.attention.\4.\3"),
    *(
        (rf"layers\.(\d+)\.blocks\.(\d+)\.{re.escape(theirs)}\.(weight|bias)", rf"stages.\1.blocks.\2.{ours}.\3")
        for theirs, ours in _BLOCK_PARTS.items()
    ),
    (r"layers\.(\d+)\.downsample\.norm\.(weight|bias)", r"stages.\1.merging.norm.\2"),
    (r"layers\.(\d+)\.downsample\.reduction\.weight", r"stages.\1.merging.reduction.weight"),
]  # fmt: skip
_UNMAPPED = "\0unmapped:"  # a target name no model has


def _fail(checkpoint: ReferenceCheckpoint, expected: str, found: str):
    raise WeightImportError.for_source(checkpoint.path, expected=expected, found=found)


def model_tensors(checkpoint: ReferenceCheckpoint) -> tuple[dict[str, torch.Tensor], set[str]]:
    """The `SwinTransformer4D` tensors by SwiFT's own names, and the keys that cannot be its: a Lightning
    checkpoint's `model.` prefix is removed and its heads (`DROPPED_HEAD_TENSORS`) are left out; any other key
    without the prefix is kept under its full name as foreign (and is then reported as unmapped)."""
    state = checkpoint.state_dict
    if not any(key.startswith(LIGHTNING_PREFIX) for key in state):
        return dict(state), set()
    tensors, foreign = {}, set()
    for key, value in state.items():
        if key in DROPPED_HEAD_TENSORS:
            continue
        name = key.removeprefix(LIGHTNING_PREFIX)
        if name == key:
            foreign.add(key)
        if name in tensors:
            _fail(checkpoint, "each tensor once", f"both {key} and {LIGHTNING_PREFIX}{key}")
        tensors[name] = value
    return tensors, foreign


def _count(state: dict, pattern: str) -> int:
    found = {int(m.group(1)) for key in state if (m := re.fullmatch(pattern, key))}
    if found and found != set(range(max(found) + 1)):
        return -1
    return max(found) + 1 if found else 0


def _hparam(hparams: dict, name: str):
    value = hparams.get(name)
    if isinstance(value, str) and value.lower() in ("true", "false"):  # str2bool arguments stored unparsed
        return value.lower() == "true"
    return value


def swift_arguments(checkpoint: ReferenceCheckpoint, **config_overrides) -> tuple[dict, dict]:
    """`(SwiFT constructor arguments, overrides in our names)` for `Swin4DConfig.from_swift`, from the shapes, the
    hyperparameters and `config_overrides`."""
    state, _ = model_tensors(checkpoint)
    shapes = _shape_architecture(checkpoint, state)
    hparams = checkpoint.hyper_parameters or {}
    values = {key: _hparam(hparams, key) for key in hparams}
    overrides = dict(config_overrides)
    resolved = _unshaped_architecture(checkpoint, values, overrides, shapes["grid"], shapes["frames"])
    patch_size = resolved["patch_size"]
    channels, remainder = divmod(shapes["patch_features"], math.prod(patch_size))
    if remainder or channels < 1:
        _fail(
            checkpoint,
            f"patch_embed.fc.weight in_features a multiple of the patch volume {math.prod(patch_size)}",
            f"{shapes['patch_features']}",
        )
    embed_dim = shapes["embed_dim"]
    arguments = dict(
        img_size=[g * p for g, p in zip(shapes["grid"], patch_size[:3])] + [shapes["frames"] * patch_size[3]],
        in_chans=channels,
        embed_dim=embed_dim,
        window_size=[int(n) for n in resolved["window_size"]],
        first_window_size=[int(n) for n in resolved["first_window_size"]],
        patch_size=patch_size,
        depths=shapes["depths"],
        num_heads=[int(n) for n in resolved["num_heads"]],
        mlp_ratio=shapes["hidden"] / embed_dim,
        qkv_bias="layers.0.blocks.0.attn.qkv.bias" in state,
        patch_norm="patch_embed.norm.weight" in state,
        c_multiplier=shapes["multiplier"],
        last_layer_full_MSA=bool(resolved["global_attention_last_stage"]),
        drop_rate=float(values.get("attn_drop_rate") or 0.0),  # load_model passes attn_drop_rate for both
        attn_drop_rate=float(values.get("attn_drop_rate") or 0.0),
    )
    _check_shaped_hyperparameters(checkpoint, values, arguments)
    for name in _NEEDED:
        overrides.pop(name, None)
    return arguments, overrides


def _shape_architecture(checkpoint: ReferenceCheckpoint, state: dict) -> dict:
    """What the tensor shapes say: `embed_dim`, `patch_features` (the patch embedding's inputs), `depths`,
    `multiplier` (`c_multiplier`), `hidden` (the MLP width), the token `grid` and the `frames` of the position tables.
    """
    expected_keys = "a SwiFT SwinTransformer4D state dict (patch_embed.fc.weight, pos_embeds.0.pos_embed, layers.0.…)"
    if not all(key in state for key in ("patch_embed.fc.weight", "pos_embeds.0.pos_embed", "pos_embeds.0.time_embed")):
        _fail(checkpoint, expected_keys, f"keys such as {sorted(state)[:3]}")
    stages = _count(state, r"pos_embeds\.(\d+)\.pos_embed")
    layers = _count(state, r"layers\.(\d+)\.blocks\.0\.norm1\.weight")
    if stages < 2 or layers != stages:
        _fail(
            checkpoint,
            "a SwiFT model of two or more stages, one layers.i per pos_embeds.i (with one stage SwiFT builds a "
            "second layer it never runs)",
            f"{stages} position tables and {layers} layers",
        )
    depths = [_count(state, rf"layers\.{i}\.blocks\.(\d+)\.norm1\.weight") for i in range(stages)]
    if min(depths) < 1:
        _fail(checkpoint, "blocks numbered 0, 1, … in every layer", f"blocks per layer {depths}")
    embed_dim, patch_features = (int(n) for n in state["patch_embed.fc.weight"].shape)
    dims = [int(state[f"layers.{i}.blocks.0.norm1.weight"].shape[0]) for i in range(stages)]
    multiplier = dims[1] // dims[0]
    if dims[0] != embed_dim or any(dim != embed_dim * multiplier**i for i, dim in enumerate(dims)):
        _fail(checkpoint, f"stage features embed_dim × c_multiplier^i from embed_dim {embed_dim}", f"{dims}")
    if "layers.0.blocks.0.mlp.linear1.weight" not in state:
        _fail(checkpoint, expected_keys, "no layers.0.blocks.0.mlp.linear1.weight")
    return {
        "embed_dim": embed_dim,
        "patch_features": patch_features,
        "depths": depths,
        "multiplier": multiplier,
        "hidden": int(state["layers.0.blocks.0.mlp.linear1.weight"].shape[0]),
        "grid": [int(n) for n in state["pos_embeds.0.pos_embed"].shape[2:5]],
        "frames": int(state["pos_embeds.0.time_embed"].shape[-1]),
    }


def _unshaped_architecture(checkpoint: ReferenceCheckpoint, values: dict, overrides: dict, grid, frames) -> dict:
    """What shapes cannot tell (`_NEEDED`, by our names), from `overrides` else the hyperparameters `values`; the
    patch size may also come from `img_size` over the token grid and frames. Fails naming what is missing."""
    patch_size = overrides.get("patch_size") or values.get("patch_size")
    img_size = values.get("img_size")
    if patch_size is None and img_size is not None and len(img_size) == 4:
        patch_size = [img_size[0] // grid[0], img_size[1] // grid[1], img_size[2] // grid[2], img_size[3] // frames]
    resolved = {
        "patch_size": patch_size,
        "num_heads": overrides.get("num_heads", values.get("num_heads")),
        "window_size": overrides.get("window_size", values.get("window_size")),
        "first_window_size": overrides.get("first_window_size", values.get("first_window_size")),
        "global_attention_last_stage": overrides.get("global_attention_last_stage", values.get("last_layer_full_MSA")),
    }
    missing = [name for name, value in resolved.items() if value is None]
    if missing:
        _fail(
            checkpoint,
            f"hyperparameters {', '.join(_NEEDED[name] for name in missing)} (or config overrides "
            f"{', '.join(f'{name}=…' for name in missing)})",
            f"none for {', '.join(missing)}",
        )
    resolved["patch_size"] = [int(n) for n in patch_size]
    if len(resolved["patch_size"]) != 4:
        _fail(checkpoint, "patch_size of 4 entries (H, W, D, T)", f"{resolved['patch_size']}")
    return resolved


def _check_shaped_hyperparameters(checkpoint: ReferenceCheckpoint, values: dict, arguments: dict) -> None:
    """Hyperparameters that the shapes also give must agree with them."""
    for name in ("img_size", "in_chans", "embed_dim", "depths", "c_multiplier"):
        stored = values.get(name)
        if stored is None:
            continue
        if name == "img_size":  # SwiFT's time table has img_size[3] frames (sequence_length may be fewer)
            agree = [int(n) for n in stored] == arguments["img_size"]
        else:
            agree = (list(stored) if isinstance(stored, (list, tuple)) else stored) == arguments[name]
        if not agree:
            _fail(checkpoint, f"hyperparameter {name} as the tensor shapes give it ({arguments[name]})", f"{stored}")


def config_from_checkpoint(checkpoint: ReferenceCheckpoint, **config_overrides) -> Swin4DConfig:
    """The `Swin4DConfig` (computing as SwiFT: `Swin4DConfig.from_swift`) of a SwiFT state dict."""
    arguments, overrides = swift_arguments(checkpoint, **config_overrides)
    try:
        return Swin4DConfig.from_swift(arguments, **overrides)
    except (ValueError, TypeError, StrictDataclassError) as error:
        cause = error.__cause__ if isinstance(error, StrictDataclassError) and error.__cause__ else error
        raise WeightImportError.for_source(
            checkpoint.path, expected="a consistent SwiFT architecture", found=str(cause).strip().splitlines()[0]
        ) from None


def _split_qkv(state: dict[str, torch.Tensor], foreign: set[str]) -> dict[str, torch.Tensor]:
    """Each fused `...attn.qkv.{weight,bias}` `(3C, …)` as `...[query]` (rows :C) and `...[key_value]` (rows C:)."""
    split = {}
    for key, value in state.items():
        if key not in foreign and re.fullmatch(r"layers\.\d+\.blocks\.\d+\.attn\.qkv\.(weight|bias)", key):
            third = value.shape[0] // 3
            split[f"{key}[query]"], split[f"{key}[key_value]"] = value[:third], value[third:]
        else:
            split[key] = value
    return split


def _renamer(foreign: set[str]):
    def rename(key: str) -> str | None:
        if key in foreign:
            return _UNMAPPED + key
        if key in DROPPED_TENSORS:
            return None
        for pattern, target in _RENAMES:
            if re.fullmatch(pattern, key):
                return re.sub(pattern, target, key)
        return _UNMAPPED + key

    return rename


def _transform(config: Swin4DConfig):
    patch_volume = math.prod(config.patch_size)

    def transform(name: str, tensor: torch.Tensor) -> torch.Tensor:
        if name == "embeddings.projection.weight":  # (E, voxels · C) in (voxel, channel) order → (channel, voxel)
            if tensor.ndim == 2 and tensor.shape[1] == patch_volume * config.num_channels:
                features = tensor.shape[0]
                return tensor.view(features, patch_volume, config.num_channels).transpose(1, 2).reshape(features, -1)
        elif name.endswith("position_embedding.spatial") and tensor.ndim == 6:  # (1, C, h, w, d, 1) → (h, w, d, C)
            return tensor[0, ..., 0].permute(1, 2, 3, 0)
        elif name.endswith("position_embedding.temporal") and tensor.ndim == 6:  # (1, C, 1, 1, 1, T) → (T, C)
            return tensor.reshape(tensor.shape[1], tensor.shape[-1]).T
        return tensor

    return transform


def convert(checkpoint: ReferenceCheckpoint, **config_overrides) -> tuple[Swin4DConfig, dict[str, torch.Tensor]]:
    """`(config, state_dict)` for `Swin4DModel`, every reference tensor mapped by name (or `WeightImportError`)."""
    config = config_from_checkpoint(checkpoint, **config_overrides)
    state, foreign = model_tensors(checkpoint)
    with torch.device("meta"):
        target = Swin4DModel(config).state_dict()
    mapped = map_state_dict(
        _split_qkv(state, foreign), _renamer(foreign), target, str(checkpoint.path), transform=_transform(config)
    )
    return config, mapped


__all__ = [
    "DROPPED_HEAD_TENSORS",
    "DROPPED_TENSORS",
    "LICENSE",
    "MODEL_CLASS",
    "NAME",
    "REFERENCE",
    "REPOSITORY",
    "config_from_checkpoint",
    "convert",
]
