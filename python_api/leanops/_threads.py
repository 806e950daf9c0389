"""``torch_threads(n)``: run a block with ``n`` torch threads, then give the caller's setting back.

Experiments and demo sections pin the thread count (the CPU is shared; their budgets count CPU time); a library
call must not leave that setting behind for the code that runs after it."""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
