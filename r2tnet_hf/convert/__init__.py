"""Import reference checkpoints (MnemoDyn, SwiFT) as r2tnet_hf models: `r2tnet import-weights`.

Each source module (`mnemodyn`, `swift`) gives `NAME`, `REPOSITORY`, `REFERENCE`, `LICENSE`, `MODEL_CLASS` and
`convert(checkpoint, **config_overrides) -> (config, state_dict)`; `import_weights` reads the checkpoint safely,
converts it, loads it strictly into the model and writes the folder (safetensors, `config.json`, the processor and
a model card naming the source and its licence) atomically.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from .common import WeightImportError, load_reference_checkpoint, write_folder

SOURCES = ("mnemodyn", "swift")


def source_module(name: str):
    if name not in SOURCES:
        raise WeightImportError(f"--from: expected one of {', '.join(SOURCES)}, found {name!r}")
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as error:
        if error.name == f"{__name__}.{name}":
            raise WeightImportError(
                f"--from {name}: expected an importer for {name}, found none in this version"
            ) from None
        raise


def _processor(config):
    from ..processing import FmriProcessor

    if hasattr(config, "num_rois"):
        return FmriProcessor(num_rois=config.num_rois, window_length=getattr(config, "num_frames", None))
    return FmriProcessor(input_type="volume", volume_shape=[config.num_channels, *config.image_size])


CARD = """---
license: {license}
library_name: transformers
tags: [fmri, neuroscience, {model_type}, imported]
---

# {name} weights imported into r2tnet-hf

Converted from `{checkpoint}` (sha256 `{sha256}`) with `r2tnet import-weights --from {source}`.

- **Source code:** [{repository}]({repository}) (`{reference}`), licence `{source_license}`.
- **Weights licence:** `{license}`{license_note}.
- **Model:** `{model_class}` ({parameters:,} parameters); every tensor of the checkpoint was mapped by name, and the
  r2tnet-hf test suite checks this port against outputs of the reference code.

```python
import r2tnet_hf
from transformers import AutoModel
model = AutoModel.from_pretrained("path/to/this/folder")
```
"""


def import_weights(
    source: str,
    checkpoint_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config_overrides: dict | None = None,
    license: str | None = None,
) -> Path:
    """Convert `checkpoint_path` from `source` ("mnemodyn" or "swift") into a `from_pretrained` folder `out_dir`."""
    module = source_module(source)
    checkpoint = load_reference_checkpoint(checkpoint_path)
    config, state_dict = module.convert(checkpoint, **(config_overrides or {}))
    model = module.MODEL_CLASS(config).eval()
    model.load_state_dict(state_dict, strict=True)

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        _processor(config).save_pretrained(folder)
        card = CARD.format(
            license=license or module.LICENSE,
            license_note="" if license else " (the source code's; set --license to the weights' own terms)",
            model_type=config.model_type,
            name=module.NAME,
            checkpoint=Path(checkpoint_path).name,
            sha256=checkpoint.sha256,
            source=source,
            repository=module.REPOSITORY,
            reference=module.REFERENCE,
            source_license=module.LICENSE,
            model_class=type(model).__name__,
            parameters=sum(p.numel() for p in model.parameters()),
        )
        (folder / "README.md").write_text(card)

    return write_folder(out_dir, write)


__all__ = ["SOURCES", "WeightImportError", "import_weights"]
