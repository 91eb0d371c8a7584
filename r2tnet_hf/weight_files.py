"""Checking the files that hold tensors before anything reads them: JSON files, safetensors headers, torch states.

Each function reads as little as it can (a safetensors header is a few kilobytes whatever the file's size), and
turns every way the file can be broken into one `FmriInputError` naming the file, what was expected and what was
found; a caller adds the fix (`hint=`) that fits its context. Nothing here unpickles: torch states are read with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

from .errors import FmriInputError

# Bytes per element of each safetensors dtype (the format's own list).
SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}  # fmt: skip
# The safetensors library refuses headers above 100 MB; so do we, before reading one.
MAX_HEADER_BYTES = 100_000_000


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def read_json_object(path: str | os.PathLike, what: str = "a JSON object", hint: str | None = None) -> dict:
    """The JSON object in `path`: missing, non-UTF-8, invalid JSON or not an object is an `FmriInputError`."""
    path = Path(path)
    if not path.is_file():
        raise FmriInputError.for_source(path, expected=what, found="no such file", hint=hint)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise FmriInputError.for_source(
            path, expected=f"{what} in UTF-8", found=f"non-UTF-8 bytes at offset {error.start}", hint=hint
        ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        found = "an empty file" if not text.strip() else f"invalid JSON ({error.msg} at line {error.lineno})"
        raise FmriInputError.for_source(path, expected=what, found=found, hint=hint) from None
    if not isinstance(value, dict):
        raise FmriInputError.for_source(path, expected=what, found=f"a JSON {type(value).__name__}", hint=hint)
    return value


def read_safetensors_header(path: str | os.PathLike) -> dict[str, tuple[str, list[int]]]:
    """`{tensor name: (dtype, shape)}` from a safetensors file's header, checked against the file's size.

    The layout is an 8-byte little-endian header length N, N bytes of JSON, then the tensor bytes; every tensor's
    `data_offsets` must lie inside those bytes and span exactly `prod(shape) × itemsize` bytes. A truncated file, an
    absurd N or an inconsistent header is refused here rather than as a `SafetensorError` traceback later.
    """
    path = Path(path)
    expected = "a safetensors file (8-byte header length, JSON header, tensor bytes)"
    if not path.is_file():
        raise FmriInputError.for_source(path, expected=expected, found="no such file")
    size = path.stat().st_size
    if size < 8:
        raise FmriInputError.for_source(path, expected=expected, found=f"a file of {size} bytes")
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > size - 8 or length > MAX_HEADER_BYTES:
            raise FmriInputError.for_source(
                path, expected=f"a header length of at most {min(size - 8, MAX_HEADER_BYTES)} bytes "
                f"(file size {size})", found=f"{length}", hint="the file is truncated or not safetensors",
            )  # fmt: skip
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FmriInputError.for_source(
            path, expected="a JSON safetensors header", found=_first_line(error), hint="the file is corrupt"
        ) from None
    if not isinstance(header, dict):
        raise FmriInputError.for_source(path, expected="a JSON object header", found=type(header).__name__)
    data_bytes = size - 8 - length
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        problem = _tensor_entry_problem(info, data_bytes)
        if problem:
            raise FmriInputError.for_source(
                path, expected=f"a consistent header entry for tensor {name!r}", found=problem,
                hint="the file is truncated or corrupt",
            )  # fmt: skip
        tensors[name] = (info["dtype"], list(info["shape"]))
    return tensors


def _tensor_entry_problem(info, data_bytes: int) -> str | None:
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
        return f"{info!r:.80} (needs dtype, shape, data_offsets)"
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in SAFETENSORS_DTYPES:
        return f"dtype {dtype!r}"
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return f"shape {shape!r:.80}"
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    ):
        return f"data_offsets {offsets!r:.80}"
    if offsets[1] > data_bytes:
        return f"data_offsets {offsets} beyond the {data_bytes} bytes of tensor data"
    if offsets[1] - offsets[0] != math.prod(shape) * SAFETENSORS_DTYPES[dtype]:
        return f"{offsets[1] - offsets[0]} bytes for shape {shape} of {dtype}"
    return None


def read_safetensors_weights(folder: Path) -> tuple[dict[str, tuple[str, list[int]]], list[Path]]:
    """Every tensor's (dtype, shape) from a folder's `model.safetensors`, or from the shards its
    `model.safetensors.index.json` lists; and the files read."""
    single = folder / "model.safetensors"
    if single.is_file():
        return read_safetensors_header(single), [single]
    index_path = folder / "model.safetensors.index.json"
    index = read_json_object(index_path, "a safetensors index (weight_map)")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise FmriInputError.for_source(
            index_path, expected="a weight_map of tensor → file", found=f"{weight_map!r:.80}"
        )
    tensors: dict[str, tuple[str, list[int]]] = {}
    files = []
    for name in sorted(set(weight_map.values())):
        shard = folder / name
        if Path(name).name != name:
            raise FmriInputError.for_source(index_path, expected="shard file names in the folder", found=repr(name))
        tensors.update(read_safetensors_header(shard))
        files.append(shard)
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise FmriInputError.for_source(
            index_path,
            expected="every tensor of weight_map in its shard",
            found=f"{len(missing)} missing ({missing[0]})",
        )
    return tensors, files


def load_torch_state(path: str | os.PathLike, what: str, hint: str | None = None):
    """A torch-saved state (optimizer, RNG, scheduler) read with `weights_only=True` as Accelerate reads it."""
    from accelerate.utils import load

    path = Path(path)
    if not path.is_file():
        raise FmriInputError.for_source(path, expected=what, found="no such file", hint=hint)
    try:
        return load(path, map_location="cpu")
    except Exception as error:  # any way torch can fail to read the bytes: they are not a readable state
        raise FmriInputError.for_source(
            path, expected=what, found=f"an unreadable file ({_first_line(error)})", hint=hint
        ) from None


__all__ = ["load_torch_state", "read_json_object", "read_safetensors_header", "read_safetensors_weights"]
