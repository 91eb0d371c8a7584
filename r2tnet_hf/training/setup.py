"""The steps every recipe shares before its first batch: the accelerator and run folder (`start_run`), the seed, the
shard folder and the subject splits; the model built from the run config (`build_model`); the training windows of a
shard folder as resumable batches (`WindowBatches`); and the run record beside the checkpoints (`save_run_record`)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..data.splits import group_value, load_splits, make_splits, save_splits, ungrouped_note
from ..data.streaming import FmriStream, ShardFolder, fmri_loader, verify_shards
from ..errors import FmriInputError
from ..hub.loading import check_model_folder, from_pretrained_checked, resolve_model_folder
from .config import RunConfig
from .distributed import make_accelerator

logger = logging.getLogger(__name__)


@dataclass
class RunSetup:
    """What a recipe starts from (`start_run`): the run config, its accelerator, the shard folder and the splits."""

    config: RunConfig
    accelerator: object
    shards: ShardFolder
    splits: dict[str, list[str]]

    @property
    def output(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def device(self):
        return self.accelerator.device


def start_run(config: RunConfig, check_shards: Callable[[RunConfig, ShardFolder], None] | None = None) -> RunSetup:
    """The accelerator (`make_accelerator`), a run folder without an earlier run's checkpoints (resuming is explicit),
    the seed, the shard folder (checked by the recipe's `check_shards`, if any) and the subject splits."""
    from accelerate.utils import set_seed

    accelerator = make_accelerator(config)
    check_output_dir(config, accelerator)
    set_seed(config.seed)
    shards = open_shards(config)
    if check_shards is not None:
        check_shards(config, shards)
    return RunSetup(config, accelerator, shards, resolve_splits(config, shards, accelerator))


def check_output_dir(config: RunConfig, accelerator) -> None:
    """Refuse to mix a new run into an old run's folder (resuming is explicit)."""
    output = Path(config.output_dir)
    if (
        config.resume_from_checkpoint is None
        and (output / "checkpoints").is_dir()
        and any((output / "checkpoints").iterdir())
    ):
        raise FmriInputError.for_source(
            output,
            expected="an empty or new run folder (or --resume_from_checkpoint latest)",
            found="checkpoints of an earlier run",
        )
    accelerator.wait_for_everyone()


def open_shards(config: RunConfig) -> ShardFolder:
    """The run's shard folder. Its processor, which every saved model keeps, records the run's `window_length`, so
    inference cuts scans into the windows the model was trained on."""
    if config.verify_shards:
        verify_shards(config.data, progress=config.progress and int(os.environ.get("RANK", "0")) == 0)
    shards = ShardFolder(config.data)
    shards.processor.window_length = config.window_length
    return shards


def resolve_splits(config: RunConfig, shards: ShardFolder, accelerator) -> dict[str, list[str]]:
    """The run's subject splits: the given file, or made from the shards' subjects (and saved in the run folder)."""
    output = Path(config.output_dir)
    if config.splits:
        splits = load_splits(config.splits, subjects=shards.subject_ids)
    else:
        groups = shard_groups(config, shards, accelerator) if config.group_column else None
        held_out = (config.validation_fraction, config.test_fraction)
        splits = make_splits(
            sorted(shards.subject_ids), groups, (1.0 - sum(held_out), *held_out), config.seed, source=config.data,
            group_column=config.group_column,
        )  # fmt: skip
    if accelerator.is_main_process:
        save_splits(splits, output / "splits.json", seed=config.seed)
    return splits


def shard_groups(config: RunConfig, shards: ShardFolder, accelerator) -> dict[str, str | None]:
    """Each subject's `group_column` value in the shards (`None` where missing: that subject is its own group)."""
    if config.group_column not in shards.phenotype_columns:
        raise FmriInputError.for_source(
            config.data, expected=f"a {config.group_column!r} column", found=f"{shards.phenotype_columns}"
        )
    groups = dict(zip(shards.metadata["subject"], map(group_value, shards.metadata[config.group_column])))
    note = ungrouped_note(groups, config.group_column)
    if note and accelerator.is_main_process:
        logger.warning(note)
    return groups


def build_backbone_config(config: RunConfig, processor):
    """The `backbone`'s config with the run's `backbone_config` overrides, its input shape from the processor."""
    from transformers import AutoConfig

    overrides = dict(config.backbone_config)
    if processor.input_type == "roi":
        overrides.setdefault("num_rois", processor.num_rois)
    else:
        overrides.setdefault("image_size", list(processor.volume_shape[1:]))
        overrides.setdefault("num_channels", processor.volume_shape[0])
    return AutoConfig.for_model(config.backbone, **overrides)


def build_model(config: RunConfig, processor, model_class, **head):
    """A fresh model from the run config, or `model_class.from_pretrained(init_from)`; the processor must match."""
    from ..models.r2tnet import R2TNetConfig

    model_config = dict(config.model_config)
    if config.temperature is not None:
        model_config["temperature"] = config.temperature
    if config.init_from:
        from transformers import AutoModel

        from ..hub.loading import read_processor

        source = resolve_model_folder(config.init_from)
        model_type = check_model_folder(source)["model_type"]
        if (source / "preprocessor_config.json").is_file():
            trained = read_processor(source)
            if trained.parcel_order_hash != processor.parcel_order_hash or trained.num_rois != processor.num_rois:
                raise FmriInputError.for_source(
                    config.data,
                    expected=f"data in the model's parcellation ({trained.atlas}, {trained.num_rois} ROIs, order "
                    f"{trained.parcel_order_hash})",
                    found=f"{processor.atlas}, {processor.num_rois} ROIs, order {processor.parcel_order_hash}",
                )
        if model_type == R2TNetConfig.model_type:
            # a new head (fine-tuning a pretrained encoder) starts fresh; the encoder's tensors must all be there
            return from_pretrained_checked(model_class, source, allow_missing=True, **head)
        # A backbone's own checkpoint (e.g. MnemoDyn pretraining): R2T-Net around it, the backbone's weights loaded.
        backbone = from_pretrained_checked(AutoModel, source)
        model_config = {**default_projection(backbone.config), **model_config}
        model = model_class(R2TNetConfig(backbone_config=backbone.config, **model_config, **head))
        model.r2tnet.backbone.load_state_dict(backbone.state_dict())
        return model
    backbone_config = build_backbone_config(config, processor)
    model_config = {**default_projection(backbone_config), **model_config}
    return model_class(R2TNetConfig(backbone_config=backbone_config, **model_config, **head))


def default_projection(backbone_config) -> dict:
    """The signature head a run uses unless `model_config` says otherwise: a linear projection to 2048 dimensions,
    or none for the tangent backbone, whose every feature carries identity (a 2048-d projection of its 7,021
    features lost Rank-1 from 50-frame segments on the development cohort; see the README)."""
    if backbone_config.model_type == "tangent_connectome":
        return {"signature_dim": backbone_config.hidden_size, "projection_num_layers": 0}
    return {"signature_dim": 2048, "projection_num_layers": 1}


class WindowBatches:
    """The training subjects' windows in batches of `batch_size` per process, resumable: an `FmriStream` read without
    workers, so a resumed run reads the very batches it stopped before."""

    def __init__(self, setup: RunSetup, modalities=None):
        config, accelerator = setup.config, setup.accelerator
        self.stream = FmriStream(
            setup.shards,
            subjects=setup.splits["train"],
            modalities=modalities,
            window_length=config.window_length,
            seed=config.seed,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            batch_size=config.batch_size,  # batches collated whole in the stream
        )
        self.loader = fmri_loader(self.stream, num_workers=0)  # batches collated into reused buffers

    def __iter__(self):
        return iter(self.loader)

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)


def to_device(batch: dict, device, keys) -> dict:
    """The model inputs `keys` of a batch (those it has) on `device`."""
    return {key: batch[key].to(device) for key in keys if key in batch}


def save_run_record(setup: RunSetup, task: str, extra: dict) -> None:
    """OUTPUT/run_config.yaml: the resolved config, with the task, the launch and the recipe's `extra`."""
    config, accelerator = setup.config, setup.accelerator
    if accelerator.is_main_process:
        setup.output.mkdir(parents=True, exist_ok=True)
        config.save(
            setup.output / "run_config.yaml",
            extra={
                "task": task,
                "model_type": "r2tnet",
                "num_processes": accelerator.num_processes,
                "distributed_type": accelerator.distributed_type.value,  # FSDP when the weights are sharded
                **extra,
            },
        )


def tracker_config(config: RunConfig) -> dict:
    """The config as the trackers take it (TensorBoard's hyperparameters): scalars, with lists, dicts and None as JSON."""
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) or v is None else v) for k, v in config.to_dict().items()}
