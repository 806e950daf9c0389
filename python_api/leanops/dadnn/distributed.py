"""DADNN trained with PyTorch's own DistributedDataParallel.

    torchrun --nproc_per_node=2 -m leanops.dadnn.distributed --samples 20000 --epochs 2

Every rank draws the same data (same seed), trains through ``leanops.dadnn.train`` (which wraps the model
in DDP and shards every global batch with a ``DistributedSampler``), and rank 0 prints the test AUC.
gloo on CPU, nccl on GPU (one GPU per rank, ``LOCAL_RANK``). Without torchrun it runs in one process.
``ddp_check_worker`` is the body of the 2-process check in ``tests/test_dadnn_ddp.py``.
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist

from .data import generate
from .model import DADNN
from .train import predict, train


def tiny_setup(seed: int = 0):
    """The small data and model of the DDP check (same on every rank and in the single-process twin)."""
    data = generate(200, n_scenes=4, n_groups=3, n_categories=4, items_per_category=3, seed=seed)
    torch.manual_seed(seed)
    model = DADNN(4, data.item_category, (3,), embed_dim=4, bottom_hidden=(8,), head_hidden=(4,))
    return data, model


def ddp_check_worker(rank: int, world: int, init_file: str, out_path: str, batch: int, kt_weight: float) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        data, model = tiny_setup()
        stats = train(model, data, epochs=1, batch=batch, kt_weight=kt_weight, seed=0)
        if rank == 0:
            torch.save({"state": model.state_dict(), "steps": stats["steps"]}, out_path)
    finally:
        dist.destroy_process_group()


def main(argv=None) -> None:
    from sklearn.metrics import roc_auc_score

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256, help="rows per rank per step")
    ap.add_argument("--bottom", choices=("mlp", "mmoe"), default="mlp")
    ap.add_argument("--kt-weight", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    cuda = torch.cuda.is_available()
    if launched:
        dist.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    rank = dist.get_rank() if launched else 0
    data = generate(args.samples, n_scenes=args.scenes, seed=1000 + args.seed)
    train_set, test_set = data.split()
    torch.manual_seed(args.seed)
    model = DADNN(args.scenes, data.item_category, (data.n_groups,), bottom=args.bottom)
    if cuda:
        model = model.cuda()
    stats = train(model, train_set, epochs=args.epochs, batch=args.batch, kt_weight=args.kt_weight, seed=args.seed)
    if rank == 0:
        auc = roc_auc_score(test_set.label.numpy(), predict(model, test_set).numpy())
        world = dist.get_world_size() if launched else 1
        print(f"DADNN-{args.bottom} on {world} process(es) ({'nccl' if launched and cuda else 'gloo' if launched else 'no DDP'}): "
              f"{stats['steps']} steps of {world} x {args.batch} rows, {stats['seconds']:.1f} s, test AUC {auc:.4f} "
              f"(Bayes ceiling {roc_auc_score(test_set.label.numpy(), test_set.bayes_prob.numpy()):.4f}; "
              f"generated data, known ground truth)")
    if launched:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
