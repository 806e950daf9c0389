"""Sizes past the hardware limits: batches past 65535 (CUDA gridDim.y), offsets past 2^31 (int32), large C.

The launch configuration and the offset arithmetic are tested as functions (a >2^31-element tensor does
not fit here); the grid-stride loops are run with the grid capped small, so they really loop; a batch of
70000 runs for real where it is cheap.
"""
import pytest
import torch

import leanops
from leanops import _backend, _library
from leanops.reference import merge as ref

needs_triton = pytest.mark.skipif(not (_backend.triton_available() and (torch.cuda.is_available()
                                                                      or _backend.triton_runs_on_cpu())),
                                  reason="triton cannot run here")
BIG_BATCH = 70_000  # past CUDA's gridDim.y limit (65535)


def _merge_roundtrip(name, device, bsz, n, c, num_protected, r, seed=0, gated=True):
    """bipartite_match + merge_wavg (+ backward) + slot map + unmerge (+ backward) against the reference."""
    g = torch.Generator().manual_seed(seed)
    metric = torch.randn(bsz, n, min(c, 8), generator=g, dtype=torch.float64)
    x = torch.randn(bsz, n, c, generator=g, dtype=torch.float64)
    size = torch.randint(1, 4, (bsz, n), generator=g).float()
    got = leanops.bipartite_match(metric.to(device), r, num_protected, backend=name)
    src, dst, unm = ref.bipartite_match(metric, r, num_protected)
    for gt, w in zip(got, (src, dst, unm)):
        assert torch.equal(gt.cpu(), w)
    cg = torch.randn(bsz, 1, c, generator=g, dtype=torch.float64) if gated else None
    tg = torch.randn(bsz, src.shape[1], 1, generator=g, dtype=torch.float64) if gated else None
    leaves = [t for t in (x, cg, tg) if t is not None]
    ours = [t.to(device).requires_grad_() for t in leaves]
    dev = [t.to(device) for t in (size, src, dst, unm)]
    out, out_size = leanops.merge_wavg(ours[0], dev[0], *dev[1:], num_protected, *(ours[1:] or [None, None]),
                                       backend=name)
    refs = [t.clone().requires_grad_() for t in leaves]
    want, want_size = ref.merge_wavg(refs[0], size, src, dst, unm, num_protected, *(refs[1:] or [None, None]))
    torch.testing.assert_close(out.cpu(), want, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out_size.cpu(), want_size)
    grad = torch.randn(want.shape, generator=g, dtype=torch.float64)
    for gt, w in zip(torch.autograd.grad(out, ours, grad.to(device)), torch.autograd.grad(want, refs, grad)):
        torch.testing.assert_close(gt.cpu(), w, rtol=1e-9, atol=1e-9)
    slot = leanops.merge_slot_map(*dev[1:], num_protected, n, backend=name)
    assert torch.equal(slot.cpu(), ref.merge_slot_map(src, dst, unm, num_protected, n))
    xm = want.detach().to(device).requires_grad_()
    back = leanops.unmerge(xm, slot, backend=name)
    torch.testing.assert_close(back.cpu(), ref.unmerge(want.detach(), slot.cpu()))
    (gm,) = torch.autograd.grad(back, xm, torch.ones_like(back))
    counts = torch.zeros(want.shape[:2], dtype=torch.float64).scatter_add_(1, slot.cpu(), torch.ones(slot.shape,
                                                                                                   dtype=torch.float64))
    torch.testing.assert_close(gm.cpu()[..., 0], counts)  # a slot gathers one gradient per token


# ----------------------------------------------------------------------------- batch past 65535
@pytest.mark.skipif(not _library.compiled_available(), reason="compiled library not built")
def test_batch_past_65535_cpp():
    _merge_roundtrip("cpp", "cpu", BIG_BATCH, 5, 2, 1, 2)


@needs_triton
def test_big_batch_triton(monkeypatch):
    """On a GPU: batch 70000 on the Triton kernels. Under the CPU interpreter every row costs Python time
    (70000 rows would take many minutes), so a batch of 40 runs with the grid capped at 16 programs: the
    same grid-stride loops a GPU runs past its grid limit."""
    from leanops.triton_kernels import merge as tk

    if torch.cuda.is_available():
        _merge_roundtrip("triton", "cuda", BIG_BATCH, 3, 1, 1, 1, gated=False)
    else:
        monkeypatch.setattr(tk, "MAX_GRID_AXIS0", 16)
        _merge_roundtrip("triton", "cpu", 40, 3, 1, 1, 1, gated=False)


# ----------------------------------------------------------------------------- launch configuration
@needs_triton
def test_triton_launch_grid_stays_within_limits():
    from leanops.triton_kernels.merge import MAX_GRID_AXIS0, MAX_GRID_AXIS12, launch_grid

    assert launch_grid(0) == (1, 1)  # a launch needs one program
    assert launch_grid(BIG_BATCH * 197, 3) == (BIG_BATCH * 197, 3)  # batch on axis 0: no 65535 cap
    assert launch_grid(2**40, 2**20) == (MAX_GRID_AXIS0, MAX_GRID_AXIS12)  # capped; the kernels loop
    assert MAX_GRID_AXIS0 == 2**31 - 1 and MAX_GRID_AXIS12 == 65535


@needs_triton
@pytest.mark.parametrize("num_protected,r,gated", [(1, 7, True), (0, 0, False)])
def test_triton_grid_stride_loops_cover_every_row_and_channel(backend, monkeypatch, num_protected, r, gated):
    """With the grid capped at 3 x 2 programs and 16 channels per step, every kernel must loop over rows,
    tiles and channel blocks to get the right answer."""
    name, device = backend
    if name != "triton":
        pytest.skip("Triton launch configuration")
    from leanops.triton_kernels import merge as tk

    monkeypatch.setattr(tk, "MAX_GRID_AXIS0", 3)
    monkeypatch.setattr(tk, "MAX_GRID_AXIS12", 2)
    monkeypatch.setattr(tk, "BLOCK_C_MAX", 16)
    _merge_roundtrip(name, device, 2, 21, 40, num_protected, r, seed=1, gated=gated)


# ----------------------------------------------------------------------------- offsets past 2^31
if _backend.triton_available():
    import triton
    import triton.language as tl

    from leanops.triton_kernels.merge import _row_offset, _token_offset

    @triton.jit
    def _offset_probe(out_ptr, B, N, TOK, C):
        b = tl.program_id(0) + B  # an int32 batch index, as the kernels' rows are
        tl.store(out_ptr + 0, _token_offset(b, N, TOK, C))
        tl.store(out_ptr + 1, _row_offset(b, N))
        tl.store(out_ptr + 2, ((b * N + TOK) * C).to(tl.int64))  # the same product in int32


@needs_triton
def test_triton_offsets_are_int64_past_2_31():
    """The kernels' offset helpers, run by a probe kernel with values whose products pass 2^31: token
    39999 of batch row 70000 of a [B, 40000, 4096] tensor is element 1.1e13. The same product in int32
    (what ``program_id * N * C`` gives) wraps, which the probe shows too, so the check is not vacuous."""
    from leanops.triton_kernels._common import launch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = torch.zeros(3, dtype=torch.int64, device=device)
    bsz, n, tok, c = BIG_BATCH, 40_000, 39_999, 4096
    launch(_offset_probe, (1,), out, bsz, n, tok, c)
    want = (bsz * n + tok) * c
    assert want > 2**40
    assert out[0].item() == want and out[1].item() == bsz * n
    assert out[2].item() != want  # int32 wraps: the cast in the helpers is needed


# ----------------------------------------------------------------------------- any C
@pytest.mark.parametrize("c", [4096, 5000])
def test_large_channel_count(backend, c):
    """No hidden channel limit: C = 4096 and a C that is not a power of two, forward and backward."""
    name, device = backend
    _merge_roundtrip(name, device, 2, 9, c, 1, 3, seed=c)
