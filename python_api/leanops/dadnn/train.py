"""Training and evaluation of DADNN and its baselines; runs unchanged under ``torchrun`` (DDP).

When ``torch.distributed`` is initialised (``torchrun --nproc_per_node=N``, gloo on CPU, nccl on GPU),
``train`` wraps the model in ``DistributedDataParallel`` and each rank reads its share of every global
batch through a ``DistributedSampler``: with ``batch`` rows per rank, a step sees ``N * batch`` rows, and
since DDP averages the gradients of equal-sized per-rank mean losses, the step equals a single-process
step on those ``N * batch`` rows (``global_batches`` lists them).
"""
from __future__ import annotations

import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from .data import SceneData
from .model import DADNN, dadnn_loss


class _Rows(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def rank_batches(n: int, batch: int, world: int, rank: int, seed: int, epoch: int):
    """The row indices rank ``rank`` of ``world`` trains on, batch by batch, in one epoch
    (``DistributedSampler``, shuffled with ``seed + epoch``, last partial batch dropped)."""
    sampler = DistributedSampler(_Rows(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    idx = torch.tensor(list(sampler), dtype=torch.long)
    return [idx[i:i + batch] for i in range(0, len(idx) - batch + 1, batch)]


def global_batches(n: int, batch: int, world: int, seed: int, epoch: int):
    """The global batches of an N-rank run (every rank's batch i, concatenated): what one process trains
    on to reproduce it."""
    per_rank = [rank_batches(n, batch, world, r, seed, epoch) for r in range(world)]
    return [torch.cat(parts) for parts in zip(*per_rank)]


def train(model: DADNN, data: SceneData, epochs: int = 3, batch: int = 256, lr: float = 3e-3, seed: int = 0,
          kt_weight: float = 0.0, kt_teacher: str = "ensemble", min_steps: int = 0, progress=None,
          batches=None) -> dict:
    """Adam on the click log-loss (+ ``kt_weight`` x the knowledge-transfer loss). ``batch`` is per rank.
    ``min_steps``: run extra epochs until at least this many steps were made (small data sets).
    ``batches(epoch)``: override of the row indices per step (the DDP check's single-process twin).
    Returns stats (steps, seconds, last losses)."""
    if kt_weight < 0:
        raise ValueError(f"kt_weight must be >= 0, got {kt_weight!r}")
    distributed = dist.is_available() and dist.is_initialized()
    world, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
    net = DistributedDataParallel(model) if distributed else model
    device = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    use_kt = kt_weight > 0 and model.n_heads > 1
    steps, epoch, start = 0, 0, time.perf_counter()
    losses = (float("nan"),) * 3
    n = len(data)
    while epoch < epochs or steps < min_steps:
        plan = batches(epoch) if batches is not None else rank_batches(n, min(batch, n // world), world, rank, seed,
                                                                        epoch)
        if not plan:
            break
        for idx in plan:
            part = data.subset(idx)
            inputs = [t.to(device) for t in part.model_inputs()]
            out = net(*inputs, all_heads=use_kt)
            total, main, kt = dadnn_loss(out, part.label.to(device), inputs[0], kt_weight if use_kt else 0.0,
                                         kt_teacher)
            opt.zero_grad()
            total.backward()
            opt.step()
            steps += 1
            losses = (float(total.detach()), float(main.detach()), float(kt.detach()))
        epoch += 1
        if progress is not None:
            progress.update(1)
    return {"steps": steps, "epochs": epoch, "seconds": time.perf_counter() - start, "loss": losses[0],
            "main_loss": losses[1], "kt_loss": losses[2]}


@torch.no_grad()
def predict(model: DADNN, data: SceneData, batch: int = 4096) -> torch.Tensor:
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [model(*(t.to(device) for t in data.model_inputs(slice(i, i + batch)))).cpu()
           for i in range(0, len(data), batch)]
    model.train(was)
    return torch.sigmoid(torch.cat(out)) if out else torch.empty(0)
