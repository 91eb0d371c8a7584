import math
import socket
import time

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from r2tnet_hf.training.losses import nt_xent_loss


def test_nt_xent_matches_a_hand_computation():
    """Four samples, two subjects (0, 0, 1, 1): each anchor has exactly one positive."""
    features = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    ids = torch.tensor([0, 0, 1, 1])
    tau = 0.5
    z = features / features.norm(dim=1, keepdim=True)
    sim = (z @ z.T).numpy() / tau
    expected = []
    for i in range(4):
        positive = {0: 1, 1: 0, 2: 3, 3: 2}[i]
        denominator = sum(math.exp(sim[i, k]) for k in range(4) if k != i)
        expected.append(-math.log(math.exp(sim[i, positive]) / denominator))
    loss = nt_xent_loss(features, ids, temperature=tau)
    assert loss.item() == pytest.approx(np.mean(expected), abs=1e-6)


def test_multiple_positives_average_their_log_probabilities():
    features = torch.randn(5, 3)
    ids = torch.tensor([7, 7, 7, 2, 9])  # anchor 4 (id 9) has no positive: a negative only
    tau = 0.2
    z = torch.nn.functional.normalize(features, dim=1)
    sim = (z @ z.T / tau).double()
    per_anchor = []
    for i in range(4):
        others = [k for k in range(5) if k != i]
        positives = [k for k in others if ids[k] == ids[i]]
        if not positives:
            continue
        log_denominator = torch.logsumexp(sim[i, others], dim=0)
        per_anchor.append(-np.mean([(sim[i, p] - log_denominator).item() for p in positives]))
    assert nt_xent_loss(features, ids, tau).item() == pytest.approx(np.mean(per_anchor), abs=1e-5)


def test_no_positive_in_the_batch_is_an_error():
    with pytest.raises(ValueError, match="no anchor has a positive"):
        nt_xent_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _distributed_worker(rank, world, port, features, ids, sizes, queue):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    start = sum(sizes[:rank])
    local = features[start : start + sizes[rank]].clone().requires_grad_(True)
    loss = nt_xent_loss(local, ids[start : start + sizes[rank]], temperature=0.3)
    loss.backward()
    queue.put((rank, loss.item(), local.grad.numpy().tolist()))
    dist.destroy_process_group()


def test_negatives_are_gathered_across_processes_with_exact_gradients():
    """2 gloo processes with unequal batches: the gathered loss gives each process the gradient of the global loss.

    Each process averages over its own anchors; DDP averages gradients over processes, so the reference is the
    mean of the per-process losses computed on the full batch, and the gradients must match it.
    """
    torch.manual_seed(0)
    sizes = [3, 5]
    features = torch.randn(8, 6, dtype=torch.float64).float()
    ids = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3])  # positives cross the process boundary
    context = mp.get_context("spawn")
    queue = context.Queue()
    port = _free_port()
    mp.spawn(_distributed_worker, args=(2, port, features, ids, sizes, queue), nprocs=2, join=True)
    results = sorted(queue.get(timeout=30) for _ in range(2))

    reference = features.clone().requires_grad_(True)
    z = torch.nn.functional.normalize(reference, dim=1)
    logits = (z @ z.T / 0.3).masked_fill(torch.eye(8, dtype=torch.bool), float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (ids[:, None] == ids[None, :]) & ~torch.eye(8, dtype=torch.bool)
    per_anchor = -(log_prob.masked_fill(~positives, 0).sum(1)) / positives.sum(1)
    rank_losses = [per_anchor[:3].mean(), per_anchor[3:].mean()]
    (sum(rank_losses) / 2).backward()  # what DDP's gradient averaging optimises

    for rank, loss, grad in results:
        assert loss == pytest.approx(rank_losses[rank].item(), abs=1e-5)
        start = sum(sizes[:rank])
        # DDP averages the parameter gradients of the 2 processes: each process's local gradient, divided by 2.
        grad = torch.tensor(grad)
        torch.testing.assert_close(grad / 2, reference.grad[start : start + sizes[rank]], atol=1e-5, rtol=1e-4)


def test_nt_xent_is_computed_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    features, ids = torch.randn(16, 2048), torch.arange(8).repeat(2)
    reference = nt_xent_loss(features, ids, temperature=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = nt_xent_loss(features.bfloat16(), ids, temperature=0.1)
    assert mixed.dtype == torch.float32
    # the inputs were rounded to bf16 once; the loss itself must not be (a bf16 product misses by about 1e-2 here)
    rounded = nt_xent_loss(features.bfloat16().float(), ids, temperature=0.1)
    assert mixed.item() == pytest.approx(rounded.item(), abs=1e-6)
    assert reference.item() == pytest.approx(rounded.item(), abs=1e-2)


def _agreement_worker(rank, world, port, ids_per_rank, queue):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    ids = torch.tensor(ids_per_rank[rank])
    local = torch.randn(len(ids), 4, generator=torch.Generator().manual_seed(rank)).requires_grad_(True)
    try:
        loss = nt_xent_loss(local, ids, temperature=0.3)
        loss.backward()
        queue.put((rank, "ok", loss.item(), float(local.grad.abs().sum())))
    except ValueError as error:
        queue.put((rank, "error", str(error), 0.0))
    dist.destroy_process_group()


def _run_two_ranks(ids_per_rank):
    context = mp.get_context("spawn")
    queue = context.Queue()
    processes = mp.start_processes(
        _agreement_worker, args=(2, _free_port(), ids_per_rank, queue), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 120
    while not processes.join(timeout=5):  # join returns when one process ends; wait for both
        if time.monotonic() > deadline:  # a hang is the bug: fail instead of waiting forever
            for process in processes.processes:
                process.kill()
            pytest.fail("the processes did not finish: one raised while the other waited in the all-reduce")
    return sorted(queue.get(timeout=30) for _ in range(2))


def test_a_process_without_positives_contributes_zero_while_the_others_train():
    results = _run_two_ranks([[0, 0, 1, 1], [5, 6]])  # rank 1's subjects appear once, anywhere
    assert [r[1] for r in results] == ["ok", "ok"]
    assert results[0][2] > 0 and results[0][3] > 0 and results[1][2] == 0.0


def test_no_positive_on_any_process_raises_on_every_process():
    results = _run_two_ranks([[0, 1], [2, 3]])
    assert [r[1] for r in results] == ["error", "error"] and all("no anchor has a positive" in r[2] for r in results)
