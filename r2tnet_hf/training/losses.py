"""Losses. NT-Xent with any number of positives per anchor, and negatives gathered across processes."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather equal-sized tensors; the backward sums every process's gradient and returns this process's slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # works on gloo and NCCL alike
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(features: torch.Tensor, subject_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """All-gather `features` and `subject_ids` from every process, keeping the autograd graph.

    The backward pass gives each process the sum of the gradients that every process's loss puts on its features.
    Processes may hold different batch sizes: rows are padded to the largest and the padding is dropped. Returns
    `(all_features, all_ids, offset)` where `offset` is the position of this process's rows in the gathered batch.
    """
    world = _world_size()
    if world == 1:
        return features, subject_ids, 0
    rank = dist.get_rank()
    local = torch.tensor([features.shape[0]], device=features.device)
    sizes = [torch.zeros_like(local) for _ in range(world)]
    dist.all_gather(sizes, local)
    sizes = [int(size.item()) for size in sizes]
    pad = max(sizes) - features.shape[0]
    gathered_features = _AllGatherWithGrad.apply(F.pad(features, (0, 0, 0, pad)))
    padded_ids = F.pad(subject_ids, (0, pad), value=-1)
    gathered_ids = [torch.empty_like(padded_ids) for _ in range(world)]
    dist.all_gather(gathered_ids, padded_ids)
    largest = max(sizes)
    keep = torch.cat([torch.arange(n, device=features.device) + r * largest for r, n in enumerate(sizes)])
    return gathered_features[keep], torch.cat(gathered_ids)[keep], sum(sizes[:rank])


def nt_xent_loss(
    features: torch.Tensor,
    subject_ids: torch.Tensor,
    temperature: float = 0.1,
    gather: bool = True,
) -> torch.Tensor:
    r"""Normalised-temperature cross-entropy over subjects (NT-Xent with multiple positives).

    For each local anchor *i* with at least one positive, with similarities $s_{ij} = z_i \cdot z_j / \tau$:

    $$\ell_i = -\frac{1}{|P(i)|} \sum_{p \in P(i)} \log \frac{\exp s_{ip}}{\sum_{k \ne i} \exp s_{ik}}$$

    where $P(i)$ are all *other* samples of the same subject and the sum over $k$ runs over every other sample
    (positives and negatives). With exactly one positive per anchor this is SimCLR's NT-Xent. The loss is the mean
    of $\ell_i$ over the anchors that have a positive; anchors without one still serve as negatives.

    Across processes (`torch.distributed` initialised, e.g. under `accelerate launch`) the candidates are the
    features of all processes, gathered with gradient, and the anchors are this process's own rows (open_clip's
    `local_loss=True, gather_with_grad=True`). DDP then averages the processes' gradients: the result is exactly
    the gradient of the mean of the per-process losses (the global mean when processes hold equal anchor counts).

    Args:
        features (`torch.FloatTensor` of shape `(batch_size, dim)`): embeddings; they are L2-normalised here.
        subject_ids (`torch.LongTensor` of shape `(batch_size,)`): positives share an id.
        temperature (`float`): τ > 0.
        gather (`bool`): gather candidates across processes when running distributed.
    """
    if features.ndim != 2 or subject_ids.shape != features.shape[:1]:
        raise ValueError(
            f"nt_xent_loss expects features (batch, dim) and subject_ids (batch,), got {tuple(features.shape)} and "
            f"{tuple(subject_ids.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    # float32 whatever autocast says: in bf16 the similarities of a 2048-d product lose the second decimal and the
    # log-sum-exp over the batch loses more
    with torch.autocast(device_type=features.device.type, enabled=False):
        return _nt_xent(features.float(), subject_ids, temperature, gather)


def _nt_xent(features: torch.Tensor, subject_ids: torch.Tensor, temperature: float, gather: bool) -> torch.Tensor:
    features = F.normalize(features, dim=-1)
    subject_ids = subject_ids.to(features.device).long()
    if gather:
        candidates, candidate_ids, offset = gather_with_grad(features, subject_ids)
    else:
        candidates, candidate_ids, offset = features, subject_ids, 0

    local = features.shape[0]
    logits = features @ candidates.T / temperature  # (local, all)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[torch.arange(local), torch.arange(local) + offset] = True
    positives = (subject_ids[:, None] == candidate_ids[None, :]) & ~self_mask
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    num_positives = positives.sum(dim=1)
    has_positive = num_positives > 0
    # every process decides together: one raising alone would leave the others waiting in the backward all-reduce
    anchors = has_positive.sum()
    if gather and _world_size() > 1:
        anchors = anchors.clone()
        dist.all_reduce(anchors)
    if int(anchors) == 0:
        raise ValueError("nt_xent_loss: no anchor has a positive (every subject id appears once in the batch)")
    if not bool(has_positive.any()):  # this process's anchors have no positive, others' do: it contributes 0
        return (logits.masked_fill(self_mask, 0.0) * 0.0).sum()
    per_anchor = -(log_prob.masked_fill(~positives, 0.0).sum(dim=1)) / num_positives.clamp_min(1)
    return per_anchor[has_positive].mean()
