"""Tiny configs and inputs of every backbone, shared by the per-model tests and the R2T-Net parametrised test."""

from __future__ import annotations

import torch

from r2tnet_hf import (
    CnnGruConfig,
    ConnectomeTransformerConfig,
    PerceiverFmriConfig,
    ResNet3DConfig,
    RoiTransformerConfig,
    Swin4DConfig,
    TangentConnectomeConfig,
    Vit4DConfig,
)

VOLUME, FRAMES = (8, 8, 8), 6
NUM_ROIS, ROI_FRAMES = 16, 40


def swin4d_config(**overrides):
    values = dict(
        image_size=list(VOLUME),
        num_frames=FRAMES,
        patch_size=[2, 2, 2, 1],
        window_size=[2, 2, 2, 2],
        embed_dim=16,
        depths=[2, 2],
        num_heads=[2, 4],
        mlp_ratio=2.0,
    )
    values.update(overrides)
    return Swin4DConfig(**values)


def vit4d_config(**overrides):
    values = dict(
        image_size=list(VOLUME),
        num_frames=FRAMES,
        patch_size=[4, 4, 4, 2],
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    values.update(overrides)
    return Vit4DConfig(**values)


def resnet3d_config(**overrides):
    values = dict(image_size=list(VOLUME), num_frames=FRAMES, depths=[1, 1], embedding_size=8, hidden_sizes=[16, 32])
    values.update(overrides)
    return ResNet3DConfig(**values)


def cnn_gru_config(**overrides):
    values = dict(image_size=list(VOLUME), num_frames=FRAMES, conv_channels=[8, 16], hidden_size=32)
    values.update(overrides)
    return CnnGruConfig(**values)


def perceiver_config(**overrides):
    values = dict(
        num_rois=NUM_ROIS,
        num_latents=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        time_patch_size=4,
    )
    values.update(overrides)
    return PerceiverFmriConfig(**values)


def perceiver_volume_config(**overrides):
    values = dict(
        input_type="volume",
        image_size=list(VOLUME),
        num_frames=FRAMES,
        spatial_patch_size=[4, 4, 4],
        time_patch_size=2,
        input_chunk_size=5,  # several chunks even on the tiny input
    )
    values.update(overrides)
    return perceiver_config(**values)


def roi_transformer_config(**overrides):
    values = dict(
        num_rois=NUM_ROIS,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    values.update(overrides)
    return RoiTransformerConfig(**values)


def connectome_transformer_config(**overrides):
    values = dict(
        num_rois=NUM_ROIS,
        embed_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        readout_size=4,
        hidden_size=48,
    )
    values.update(overrides)
    return ConnectomeTransformerConfig(**values)


def tangent_connectome_config(**overrides):
    values = dict(num_rois=NUM_ROIS, within_subject_components=4)
    values.update(overrides)
    return TangentConnectomeConfig(**values)


def volume_inputs(batch, frames=FRAMES, size=VOLUME):
    return {
        "fmri_values": torch.randn(batch, 1, *size, frames),
        "attention_mask": torch.ones(batch, frames, dtype=torch.long),
        "repetition_time": torch.full((batch,), 0.8),
    }


def roi_inputs(batch, frames=ROI_FRAMES):
    return {
        "fmri_values": torch.randn(batch, NUM_ROIS, frames),
        "attention_mask": torch.ones(batch, frames, dtype=torch.long),
        "repetition_time": torch.full((batch,), 0.72),
    }


# name → (tiny config factory, input factory)
BACKBONES = {
    "roi_transformer": (roi_transformer_config, roi_inputs),
    "connectome_transformer": (connectome_transformer_config, roi_inputs),
    "tangent_connectome": (tangent_connectome_config, roi_inputs),
    "swin4d": (swin4d_config, volume_inputs),
    "vit4d": (vit4d_config, volume_inputs),
    "resnet3d": (resnet3d_config, volume_inputs),
    "cnn_gru": (cnn_gru_config, volume_inputs),
    "perceiver_roi": (perceiver_config, roi_inputs),
    "perceiver_volume": (perceiver_volume_config, volume_inputs),
}
