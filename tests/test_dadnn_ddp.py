"""DADNN under DistributedDataParallel: 2 gloo processes on CPU reach the same parameters as one process
trained on the same global batches."""
import os

import torch
import torch.multiprocessing as mp

from leanops.dadnn import global_batches, train
from leanops.dadnn.distributed import ddp_check_worker, tiny_setup

BATCH, WORLD, KT = 16, 2, 0.3


def test_two_gloo_processes_match_one_process(tmp_path):
    out = str(tmp_path / "rank0.pt")
    mp.spawn(ddp_check_worker, args=(WORLD, str(tmp_path / "init"), out, BATCH, KT), nprocs=WORLD, join=True)
    ddp = torch.load(out)
    data, model = tiny_setup()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    stats = train(model, data, epochs=1, kt_weight=KT,
                  batches=lambda epoch: global_batches(len(data), BATCH, WORLD, seed=0, epoch=epoch))
    assert stats["steps"] == ddp["steps"] == len(data) // (WORLD * BATCH) >= 5
    moved = 0
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ddp["state"][name], value, rtol=1e-5, atol=1e-6, msg=name)
        moved += int(not torch.equal(value, start[name]))
    assert moved > 10  # the parameters did change: the comparison is not of two untrained models


def test_global_batches_are_the_ranks_batches_together():
    batches = global_batches(100, 8, 2, seed=0, epoch=0)
    assert len(batches) == 6 and all(b.shape == (16,) for b in batches)
    flat = torch.cat(batches)
    assert flat.unique().numel() == flat.numel()  # no row twice within an epoch
    assert not torch.equal(flat, torch.arange(96))  # shuffled
    assert not torch.equal(flat, torch.cat(global_batches(100, 8, 2, seed=0, epoch=1)))
