"""The MnemoDyn pretraining recipe: `objective` reconstruct, denoise, masked or jepa on `FmriStream` windows, through
the same loop; after every optimizer step the JEPA target encoder takes its EMA step with the scheduled momentum."""

from __future__ import annotations

from ..data.streaming import ShardFolder
from ..errors import FmriInputError
from ..hub.loading import from_pretrained_checked
from .config import RunConfig
from .loop import Recipe
from .setup import RunSetup, WindowBatches, to_device
from .validation import validate_objective

INPUTS = ("fmri_values", "attention_mask", "repetition_time")


def check_roi_shards(config: RunConfig, shards: ShardFolder) -> None:
    """MnemoDyn reads ROI series, not volumes."""
    if shards.processor.input_type != "roi":
        raise FmriInputError.for_source(config.data, expected="ROI series for MnemoDyn", found="volumes")


def mnemodyn_recipe(setup: RunSetup) -> Recipe:
    """The model (from `init_from`, or new with `mnemodyn_config`), the windows, the objective's loss, `val_loss`."""
    from ..models.mnemodyn import MnemoDynConfig, MnemoDynForPretraining

    config, shards, device = setup.config, setup.shards, setup.device
    if config.init_from:
        model = from_pretrained_checked(
            MnemoDynForPretraining, config.init_from, allow_missing=True, objective=config.objective
        )
    else:
        # MnemoDyn's weights are per position in a window of num_frames: by default, the training window.
        overrides = {
            "num_rois": shards.processor.num_rois,
            **({"num_frames": config.window_length} if config.window_length else {}),
            **config.mnemodyn_config,
            "objective": config.objective,
        }
        model = MnemoDynForPretraining(MnemoDynConfig(**overrides))

    def loss(batch, model):
        # masks and noise from the torch RNG, restored on resume
        return model(**to_device(batch, device, INPUTS), return_dict=True).loss

    def after_step(model, step: int) -> None:
        model.after_optimizer_step(progress=step / config.max_steps)

    return Recipe(
        task="pretrain",
        model=model,
        batches=WindowBatches(setup),
        loss=loss,
        validate=lambda model: validate_objective(model, shards, setup.splits["validation"], device),
        record={"objective": config.objective, "model_type": "mnemodyn"},
        after_step=after_step,
    )
