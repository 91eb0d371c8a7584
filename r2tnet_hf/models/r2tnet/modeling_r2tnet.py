"""R2T-Net: any fMRI backbone → a 2048-d, L2-normalised brain signature shared across rest and task.

`R2TNetModel` returns the signature. `R2TNetForContrastivePretraining` trains it with NT-Xent whose positives are the
other scans of the same subject (rest⇄task, another session), not two clips of one scan as in the reference code.
`R2TNetForPhenotypePrediction` puts a regression or classification head on the signature.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ...errors import FmriInputError
from ...training.losses import nt_xent_loss
from ..common import FmriPreTrainedModel, forward_docstring
from .configuration_r2tnet import R2TNetConfig


@dataclass
class R2TNetOutput(ModelOutput):
    """
    Args:
        signature (`torch.FloatTensor` of shape `(batch_size, config.signature_dim)`):
            The brain signature, L2-normalised (norm 1 per row).
        pooler_output (`torch.FloatTensor` of shape `(batch_size, backbone_hidden_size)`):
            The backbone's pooled features, before the projection head.
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_tokens, backbone_hidden_size)`):
            The backbone's token features.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): backbone hidden states, if requested.
        attentions (`tuple(torch.FloatTensor)`, *optional*): backbone attentions, if requested.
    """

    signature: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class R2TNetContrastiveOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`): NT-Xent loss over subjects.
        signature (`torch.FloatTensor` of shape `(num_views * batch_size, config.signature_dim)`):
            Signatures of every view, the first view's rows first.
        subject_ids (`torch.LongTensor` of shape `(num_views * batch_size,)`): the ids used to pick positives.
    """

    loss: torch.FloatTensor | None = None
    signature: torch.FloatTensor | None = None
    subject_ids: torch.LongTensor | None = None


@dataclass
class R2TNetPhenotypeOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): returned when `labels` are given.
        logits (`torch.FloatTensor` of shape `(batch_size, config.num_labels)`): predictions (regression values, or
            class logits).
        signature (`torch.FloatTensor` of shape `(batch_size, config.signature_dim)`): the signature the head read.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    signature: torch.FloatTensor | None = None


class R2TNetProjectionHead(nn.Module):
    """Backbone features → `projection_num_layers` linear layers with GELU between them → signature (none: the
    features themselves)."""

    def __init__(self, config: R2TNetConfig):
        super().__init__()
        sizes = [config.backbone_config.hidden_size]
        if config.projection_num_layers:
            sizes += [config.projection_hidden_size] * (config.projection_num_layers - 1) + [config.signature_dim]
        layers: list[nn.Module] = []
        for index, (size_in, size_out) in enumerate(itertools.pairwise(sizes)):
            if index:
                layers += [nn.GELU(), nn.Dropout(config.projection_dropout)]
            layers.append(nn.Linear(size_in, size_out))
        self.layers = nn.Sequential(*layers) if layers else nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class R2TNetPreTrainedModel(FmriPreTrainedModel):
    config: R2TNetConfig
    config_class = R2TNetConfig
    base_model_prefix = "r2tnet"
    # The attention is the backbone's: `set_attn_implementation` reaches it (a backbone without attention refuses
    # SDPA there, and `output_attentions` in its forward).
    _supports_sdpa = True


class R2TNetModel(R2TNetPreTrainedModel):
    r"""
    A backbone (built from `config.backbone_config` through `AutoModel`) and a projection head to the signature.

    Example:
        >>> import torch
        >>> from r2tnet_hf import R2TNetConfig, R2TNetModel, RoiTransformerConfig
        >>> backbone = RoiTransformerConfig(num_rois=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                                 intermediate_size=64)
        >>> model = R2TNetModel(R2TNetConfig(backbone_config=backbone))
        >>> model(torch.randn(2, 16, 40), repetition_time=0.72).signature.norm(dim=-1)
        tensor([1.0000, 1.0000], grad_fn=<LinalgVectorNormBackward0>)
    """

    def __init__(self, config: R2TNetConfig):
        super().__init__(config)
        self.backbone = AutoModel.from_config(config.backbone_config)
        self.projection = R2TNetProjectionHead(config)
        self.post_init()

    @can_return_tuple
    @forward_docstring()
    def forward(
        self,
        fmri_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        repetition_time: torch.Tensor | float | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> R2TNetOutput:
        r"""
        Returns:
            [`R2TNetOutput`]: the signature, and the backbone's pooled and token features (and, when asked, its
            hidden states and attentions).
        """
        backbone_output = self.backbone(
            fmri_values,
            attention_mask=attention_mask,
            repetition_time=repetition_time,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        return R2TNetOutput(
            signature=F.normalize(self.projection(backbone_output.pooler_output), dim=-1),
            pooler_output=backbone_output.pooler_output,
            last_hidden_state=backbone_output.last_hidden_state,
            hidden_states=backbone_output.hidden_states,
            attentions=backbone_output.attentions,
        )


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class R2TNetForContrastivePretraining(R2TNetPreTrainedModel):
    r"""
    R2T-Net with the NT-Xent objective over subjects.

    Call it with either

    * one batch and `subject_ids`: positives are all other rows with the same id (e.g. a rest scan and the task
      scans of the same person, from the pair sampler); or
    * two views (`fmri_values` and `paired_fmri_values`): row *i* of one view and row *i* of the other are positives,
      unless `subject_ids` says more (then every row with the same id is a positive).

    Negatives are every other row, gathered from all processes when running distributed. A backbone with a
    `regularization_loss()` (the tangent backbone's anchor to its fitted start) has it added to the loss.
    """

    def __init__(self, config: R2TNetConfig):
        super().__init__(config)
        self.r2tnet = R2TNetModel(config)
        self.post_init()

    @can_return_tuple
    @forward_docstring(
        subject_ids="""subject_ids (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Integer subject ids, the same for one person on every process (negatives are gathered across
            processes). Required without a second view.""",
        paired_fmri_values="""paired_fmri_values (`torch.FloatTensor`, *optional*):
            The second view of the same rows, as `fmri_values` (its time length may differ).""",
        paired_attention_mask="""paired_attention_mask (`torch.LongTensor`, *optional*):
            The second view's frame mask, as `attention_mask`.""",
        paired_repetition_time="""paired_repetition_time (`torch.FloatTensor` or `float`, *optional*):
            The second view's TR; defaults to `repetition_time`.""",
    )
    def forward(
        self,
        fmri_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        repetition_time: torch.Tensor | float | None = None,
        subject_ids: torch.Tensor | None = None,
        paired_fmri_values: torch.Tensor | None = None,
        paired_attention_mask: torch.Tensor | None = None,
        paired_repetition_time: torch.Tensor | float | None = None,
    ) -> R2TNetContrastiveOutput:
        r"""
        Returns:
            [`R2TNetContrastiveOutput`]: the NT-Xent loss, every view's signatures and the subject ids it used.
        """
        signature = self.r2tnet(fmri_values, attention_mask, repetition_time, return_dict=True).signature
        batch = fmri_values.shape[0]
        if subject_ids is not None:
            subject_ids = torch.as_tensor(subject_ids, device=fmri_values.device).long()
            if subject_ids.shape != (batch,):
                raise FmriInputError.for_source(
                    "subject_ids", expected=f"shape ({batch},)", found=f"{tuple(subject_ids.shape)}"
                )
        if paired_fmri_values is None:
            if subject_ids is None:
                raise ValueError("R2TNetForContrastivePretraining needs subject_ids, or a second view")
            ids = subject_ids
        else:
            if paired_fmri_values.shape[0] != batch:
                raise FmriInputError.for_source(
                    "paired_fmri_values",
                    expected=f"{batch} rows (one per row of fmri_values)",
                    found=f"{paired_fmri_values.shape[0]}",
                )
            paired_tr = repetition_time if paired_repetition_time is None else paired_repetition_time
            paired = self.r2tnet(paired_fmri_values, paired_attention_mask, paired_tr, return_dict=True).signature
            if subject_ids is None:
                # Row i of each view is its own subject; ids are offset by rank so that they stay unique when
                # negatives are gathered across processes.
                subject_ids = torch.arange(batch, device=fmri_values.device) + (_rank() << 32)
            signature = torch.cat([signature, paired])
            ids = torch.cat([subject_ids, subject_ids])
        loss = nt_xent_loss(signature, ids, temperature=self.config.temperature)
        regularization = getattr(self.r2tnet.backbone, "regularization_loss", None)
        if regularization is not None:  # e.g. the tangent backbone's pull toward its fitted start
            loss = loss + regularization().to(loss.dtype)
        return R2TNetContrastiveOutput(loss=loss, signature=signature, subject_ids=ids)


class R2TNetForPhenotypePrediction(R2TNetPreTrainedModel):
    r"""
    R2T-Net with a linear head on the signature, for regression (e.g. cognition, age) or classification (diagnosis).

    The head reads the signature rescaled by √signature_dim, so each of its dimensions has about unit scale. The loss
    follows transformers' `problem_type` convention: MSE for `"regression"` (targets that are NaN, i.e. missing
    phenotypes, are left out of the loss), cross-entropy for `"single_label_classification"` (labels -100 are left
    out; a batch whose labels are all -100 has loss 0, not NaN), and BCE-with-logits for
    `"multi_label_classification"`.
    """

    def __init__(self, config: R2TNetConfig):
        super().__init__(config)
        self.r2tnet = R2TNetModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.signature_dim, config.num_labels)
        self.post_init()

    @can_return_tuple
    @forward_docstring(
        labels="""labels (`torch.Tensor`, *optional*):
            Floats `(batch_size,)` or `(batch_size, num_labels)` for regression; class indices `(batch_size,)` for
            single-label; 0/1 `(batch_size, num_labels)` for multi-label."""
    )
    def forward(
        self,
        fmri_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        repetition_time: torch.Tensor | float | None = None,
        labels: torch.Tensor | None = None,
    ) -> R2TNetPhenotypeOutput:
        r"""
        Returns:
            [`R2TNetPhenotypeOutput`]: the logits, the signature the head read, and the loss when `labels` are given.
        """
        signature = self.r2tnet(fmri_values, attention_mask, repetition_time, return_dict=True).signature
        logits = self.classifier(self.dropout(signature) * math.sqrt(self.config.signature_dim))
        loss = None if labels is None else self.phenotype_loss(logits, labels)
        return R2TNetPhenotypeOutput(loss=loss, logits=logits, signature=signature)

    def resolve_problem_type(self, labels: torch.Tensor) -> str:
        if self.config.problem_type is not None:
            return self.config.problem_type
        if self.config.num_labels == 1:
            return "regression"
        if labels.dtype in (torch.long, torch.int, torch.int16, torch.int8, torch.uint8):
            return "single_label_classification"
        return "multi_label_classification"

    def phenotype_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.to(logits.device)
        problem_type = self.resolve_problem_type(labels)
        num_labels = self.config.num_labels
        if problem_type == "regression":
            target = labels.to(logits.dtype).reshape(logits.shape[0], num_labels)
            observed = torch.isfinite(target)
            if not bool(observed.any()):
                return logits.sum() * 0.0
            return F.mse_loss(logits[observed], target[observed])
        if problem_type == "single_label_classification":
            labels = labels.view(-1).long()
            if not bool((labels != -100).any()):  # every label missing: no loss rather than cross-entropy's NaN
                return logits.sum() * 0.0
            return F.cross_entropy(logits.view(-1, num_labels), labels)
        if problem_type == "multi_label_classification":
            return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype).view_as(logits))
        raise ValueError(f"Unknown problem_type {problem_type!r}")


__all__ = [
    "R2TNetContrastiveOutput",
    "R2TNetForContrastivePretraining",
    "R2TNetForPhenotypePrediction",
    "R2TNetModel",
    "R2TNetOutput",
    "R2TNetPhenotypeOutput",
    "R2TNetPreTrainedModel",
]
