"""Reading the parity fixtures made once from the reference code (`tests/fixtures/<model>/README.md`)."""

import json

from safetensors import safe_open

from r2tnet_hf.convert.common import ReferenceCheckpoint


def read_reference_fixture(path) -> tuple[ReferenceCheckpoint, dict, dict]:
    """`(checkpoint, tensors, metadata)` of a fixture: the reference's `state_dict.*` tensors as a Lightning
    checkpoint stores them (the LightningModule's `model.` prefix and its hyperparameters), every tensor by name, and
    the file's metadata."""
    with safe_open(path, framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is not iterable)
        metadata = handle.metadata()
    state = {key.removeprefix("state_dict."): v for key, v in tensors.items() if key.startswith("state_dict.")}
    checkpoint = ReferenceCheckpoint(
        path, {f"model.{key}": value for key, value in state.items()}, json.loads(metadata["hyper_parameters"])
    )
    return checkpoint, tensors, metadata
