"""jagged_attention_pool at sizes beyond the kernels' former limits: batches above CUDA's gridDim.y
(65535), head dims above one block (Triton) or 48 KB of shared memory (CUDA), and int64 offsets.
What needs a GPU or more memory than CI has is checked through the launch-configuration functions."""
import pytest
import torch
from conftest import KERNEL_BACKENDS
from test_pool_ops import make_case

import leanops
from leanops import _backend
from leanops.reference import pool as ref

IDS = [f"{b}-{d}" for b, d in KERNEL_BACKENDS]
has_triton = pytest.mark.skipif(not _backend.triton_available(), reason="triton not installed")


def _compare(got, want, tol):
    torch.testing.assert_close(got[0], want[0], rtol=tol, atol=tol)
    torch.testing.assert_close(got[1], want[1], rtol=tol, atol=tol)


def _grads(backend, a):
    leaves = {k: a[k].detach().clone().requires_grad_() for k in ("q", "k", "v", "bias", "prior_value")}
    out, lse = leanops.jagged_attention_pool(*{**a, **leaves}.values(), backend=backend)
    g = torch.Generator().manual_seed(0)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum() + lse.clamp_min(-1e30).sum()
    return (out, lse), torch.autograd.grad(loss, list(leaves.values()))


@pytest.mark.skipif(not any(b == "cpp" for b, _ in KERNEL_BACKENDS), reason="compiled library not built")
def test_batch_above_65535_rows_cpp():
    """B = 70000 (CTR scoring size; above CUDA's gridDim.y limit the CUDA kernels no longer use)."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(0, 4, (70000,), generator=g)
    a = make_case(lengths.tolist(), 1, 2, 2, torch.float32, "cpu", 1, True, False, True)
    (got, got_grads) = _grads("cpp", a)
    (want, want_grads) = _grads("reference", a)
    _compare(got, want, 1e-5)
    for x, y in zip(got_grads, want_grads):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS, ids=IDS)
@pytest.mark.parametrize("d,dv", [(1000, 3), (3, 1000), (129, 4096)])
def test_large_head_dims(backend, d, dv):
    """D and Dv above one Triton block (128) take several chunks; every backend equals the reference."""
    name, device = backend
    a = make_case([3, 0, 5], 1, d, dv, torch.float64, device, 2, True, True, True)
    a["scale"] = 0.3 * d ** -0.5
    got, got_grads = _grads(name, a)
    want, want_grads = _grads("reference", a)
    _compare(got, want, 1e-9)
    for x, y in zip(got_grads, want_grads):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------- launch configuration
@has_triton
def test_triton_blocks_are_bounded_and_cover_the_dims():
    from leanops.triton_kernels.pool import MAX_BLOCK_D, pool_blocks

    for d, dv in [(0, 0), (1, 1), (16, 17), (128, 129), (1000, 4096), (2**20, 3)]:
        blk = pool_blocks(d, dv)
        assert 16 <= blk["BLOCK_D"] <= MAX_BLOCK_D and 16 <= blk["BLOCK_DV"] <= MAX_BLOCK_D
        assert blk["d_passes"] >= 1 and blk["dv_passes"] >= 1
        assert blk["d_passes"] * blk["BLOCK_D"] >= d > (blk["d_passes"] - 1) * blk["BLOCK_D"] or d == 0
        assert blk["dv_passes"] * blk["BLOCK_DV"] >= dv > (blk["dv_passes"] - 1) * blk["BLOCK_DV"] or dv == 0


@has_triton
def test_triton_grid_is_one_axis_of_pairs():
    from leanops.triton_kernels.pool import MAX_PROGRAMS, pool_grid

    assert pool_grid(70000 * 4) == (280000,)  # above 65535: on axis 0, not axis 1
    assert pool_grid(0) == (1,)
    assert pool_grid(2**40) == (MAX_PROGRAMS,)  # the programs then stride over the pairs


if _backend.triton_available():
    import triton
    import triton.language as tl

    from leanops.triton_kernels.pool import _pair

    @triton.jit
    def _pair_probe(out_ptr, base, H, D):
        """Stores (bh * D, b, h) of pair bh = base + program id, as the pool kernels compute them."""
        bh, b, h = _pair(tl.program_id(0) + base, H)
        row = out_ptr + tl.program_id(0) * 3 + tl.arange(0, 1)
        tl.store(row, bh * D)
        tl.store(row + 1, b)
        tl.store(row + 2, h)


@has_triton
@pytest.mark.skipif(not _backend.triton_runs_on_cpu(), reason="runs the probe under the interpreter")
def test_triton_offsets_are_int64():
    """The pair index times D past 2^31 (B*H*D > 2^31 elements) does not wrap in int32."""
    out = torch.zeros(2, 3, dtype=torch.int64)
    base, heads, d = 2**30 + 5, 4, 4096
    _pair_probe[(2,)](out, base, heads, d)
    for i in range(2):
        assert out[i].tolist() == [(base + i) * d, (base + i) // heads, (base + i) % heads]
