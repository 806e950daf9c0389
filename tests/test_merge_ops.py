"""Every merge backend against the pure-PyTorch reference, forward and backward, on random and edge shapes."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import leanops
from leanops.reference import merge as ref

# few, small examples: the Triton kernels run under the CPU interpreter in CI
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def merge_case(draw, max_n=40):
    """(B, N, C, num_protected, r, seed), edge sizes included: B=0, N=1, N=2, num_protected=N, r=0, r=max."""
    bsz = draw(st.integers(0, 2))
    n = draw(st.integers(1, max_n))
    num_protected = draw(st.one_of(st.integers(0, min(n, 4)), st.just(n)))
    r = draw(st.one_of(st.integers(0, n - num_protected), st.just(n - num_protected), st.just(0)))
    c = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    return bsz, n, c, num_protected, r, seed


def _inputs(bsz, n, c, seed, dtype, device):
    g = torch.Generator().manual_seed(seed)
    metric = torch.randn(bsz, n, c, generator=g, dtype=torch.float64).to(dtype).to(device)
    x = torch.randn(bsz, n, c + 3, generator=g, dtype=torch.float64).to(dtype).to(device)
    size = (torch.rand(bsz, n, generator=g) * 3 + 0.5).to(device)
    return metric, x, size


@given(case=merge_case())
@SETTINGS
def test_bipartite_match_equals_reference(backend, case):
    name, device = backend
    bsz, n, c, num_protected, r, seed = case
    metric, _, _ = _inputs(bsz, n, c, seed, torch.float64, device)
    got = leanops.bipartite_match(metric, r, num_protected, backend=name)
    want = ref.bipartite_match(metric.cpu(), r, num_protected)
    for g, w in zip(got, want):
        assert g.dtype == torch.int64 and g.is_contiguous()
        assert torch.equal(g.cpu(), w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_bipartite_match_low_precision(backend, dtype):
    name, device = backend
    metric, _, _ = _inputs(4, 197, 64, 0, dtype, device)
    got = leanops.bipartite_match(metric, 16, 1, backend=name)
    want = ref.bipartite_match(metric.cpu(), 16, 1)
    # similarities run in fp32 on the same rounded inputs: sets agree; near-equal scores may reorder
    for g, w in zip(got, want):
        assert torch.equal(g.cpu().sort(dim=1).values, w.sort(dim=1).values)


@given(case=merge_case(), use_size=st.booleans(), gated=st.booleans())
@SETTINGS
def test_merge_wavg_forward_and_backward_equal_reference(backend, case, use_size, gated):
    """Forward values and sizes, and the gradients of x and of the PYRA gates, in float64."""
    name, device = backend
    bsz, n, c, num_protected, r, seed = case
    metric, x, size = _inputs(bsz, n, c, seed, torch.float64, device)
    # integer sizes: the backward divides by the float32 size_out, exact for integer totals
    size = size.round() if use_size else None
    src, dst, unm = (t.to(device) for t in ref.bipartite_match(metric.cpu(), r, num_protected))
    cg = tg = None
    if gated:
        cg = torch.randn(bsz, 1, x.shape[2], dtype=x.dtype, device=device)
        tg = torch.randn(bsz, src.shape[1], 1, dtype=x.dtype, device=device)
    leaves = [t.clone().requires_grad_() for t in (x, cg, tg) if t is not None]
    ours = leanops.merge_wavg(leaves[0], size, src, dst, unm, num_protected, *(leaves[1:] or [None, None]),
                              backend=name)
    ref_leaves = [t.detach().clone().requires_grad_() for t in leaves]
    want = ref.merge_wavg(ref_leaves[0], size, src, dst, unm, num_protected, *(ref_leaves[1:] or [None, None]))
    assert ours[0].shape == (bsz, n - src.shape[1], x.shape[2]) and ours[1].dtype == torch.float32
    assert ours[0].is_contiguous() and ours[1].is_contiguous()
    torch.testing.assert_close(ours[0], want[0], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours[1], want[1])
    if bsz == 0:
        return
    grad = torch.randn_like(want[0])
    got_grads = torch.autograd.grad(ours[0], leaves, grad)
    want_grads = torch.autograd.grad(want[0], ref_leaves, grad, allow_unused=True)
    for gg, wg in zip(got_grads, want_grads):
        torch.testing.assert_close(gg, torch.zeros_like(gg) if wg is None else wg, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_merge_wavg_low_precision(backend, dtype):
    name, device = backend
    metric, x, size = _inputs(2, 31, 24, 1, dtype, device)
    src, dst, unm = leanops.bipartite_match(metric, 10, 1, backend=name)
    cg = torch.randn(2, 1, x.shape[2], device=device).to(dtype)
    tg = torch.randn(2, 10, 1, device=device).to(dtype)
    out, _ = leanops.merge_wavg(x, size, src, dst, unm, 1, cg, tg, backend=name)
    want, _ = ref.merge_wavg(x, size, src, dst, unm, 1, cg, tg)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(out, want, rtol=tol, atol=tol)


def test_empty_slots_from_zero_size(backend):
    """Padding carries size 0: a slot with no real token comes out as zeros, never NaN."""
    name, device = backend
    metric, x, _ = _inputs(2, 9, 4, 3, torch.float32, device)
    size = torch.zeros(2, 9, device=device)
    size[:, :3] = 1
    src, dst, unm = leanops.bipartite_match(metric, 4, 1, backend=name)
    out, out_size = leanops.merge_wavg(x, size, src, dst, unm, 1, backend=name)
    want, want_size = ref.merge_wavg(x, size, src, dst, unm, 1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(out_size, want_size)


@given(case=merge_case(max_n=30))
@SETTINGS
def test_slot_map_and_unmerge_equal_reference(backend, case):
    name, device = backend
    bsz, n, c, num_protected, r, seed = case
    metric, x, _ = _inputs(bsz, n, c, seed, torch.float64, device)
    src, dst, unm = (t.to(device) for t in ref.bipartite_match(metric.cpu(), r, num_protected))
    slot = leanops.merge_slot_map(src, dst, unm, num_protected, n, backend=name)
    want = ref.merge_slot_map(src.cpu(), dst.cpu(), unm.cpu(), num_protected, n)
    assert torch.equal(slot.cpu(), want)
    merged, _ = ref.merge_wavg(x, None, src, dst, unm, num_protected)
    xm = merged.clone().requires_grad_()
    back = leanops.unmerge(xm, slot, backend=name)
    torch.testing.assert_close(back, ref.unmerge(merged, slot))
    # unmerged and protected tokens come back exactly
    keep = torch.cat([torch.arange(num_protected, device=device).expand(bsz, -1), unm], 1)
    torch.testing.assert_close(back.gather(1, keep[..., None].expand(-1, -1, x.shape[2])),
                               x.gather(1, keep[..., None].expand(-1, -1, x.shape[2])))
    if bsz:  # backward: each slot sums the gradients of its tokens
        grad = torch.randn_like(back)
        (got,) = torch.autograd.grad(back, xm, grad)
        xr = merged.clone().requires_grad_()
        (want_grad,) = torch.autograd.grad(ref.unmerge(xr, slot), xr, grad)
        torch.testing.assert_close(got, want_grad, rtol=1e-12, atol=1e-12)


def test_composed_slot_maps_count_sizes(backend):
    """Tracing through two merges: tokens per final slot equals the merged size."""
    name, device = backend
    metric, x, _ = _inputs(3, 50, 8, 7, torch.float64, device)
    s1 = leanops.bipartite_match(metric, 10, 2, backend=name)
    x1, size1 = leanops.merge_wavg(metric, None, *s1, 2, backend=name)
    s2 = leanops.bipartite_match(x1, 12, 2, backend=name)
    _, size2 = leanops.merge_wavg(x1, size1, *s2, 2, backend=name)
    slot = leanops.compose_slot_maps(leanops.merge_slot_map(*s1, 2, 50, backend=name),
                                     leanops.merge_slot_map(*s2, 2, 40, backend=name))
    counts = torch.zeros(3, 28, dtype=torch.float32, device=device).scatter_add_(1, slot, torch.ones(3, 50, device=device))
    torch.testing.assert_close(counts, size2)


@pytest.mark.parametrize("n,num_protected,r", [(13, 1, 4), (12, 2, 5), (9, 0, 4), (7, 3, 2), (9, 1, 0)])
def test_gradcheck_merge_wavg(backend, n, num_protected, r):
    name, device = backend
    metric, x, size = _inputs(2, n, 5, n, torch.float64, device)
    src, dst, unm = (t.to(device) for t in ref.bipartite_match(metric.cpu(), r, num_protected))
    x = x.requires_grad_()
    cg = torch.randn(2, 1, x.shape[2], dtype=torch.float64, device=device, requires_grad=True)
    tg = torch.randn(2, src.shape[1], 1, dtype=torch.float64, device=device, requires_grad=True)
    fast = name == "triton"  # interpreted: one random direction, not the full Jacobian
    f = lambda x, cg, tg: leanops.merge_wavg(x, size, src, dst, unm, num_protected, cg, tg, backend=name)[0]  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, cg, tg), fast_mode=fast)
    f = lambda x: leanops.merge_wavg(x, None, src, dst, unm, num_protected, backend=name)[0]  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,), fast_mode=fast)


def test_gradcheck_unmerge(backend):
    name, device = backend
    slot = torch.tensor([[0, 2, 1, 2, 0], [1, 1, 1, 0, 2]], device=device)
    xm = torch.randn(2, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: leanops.unmerge(t, slot, backend=name), (xm,), fast_mode=name == "triton")


def test_protected_tokens_stay_first_untouched(backend):
    """TempMe keeps one class token per frame: several protected tokens pass through unchanged."""
    name, device = backend
    metric, x, _ = _inputs(2, 40, 6, 11, torch.float32, device)
    src, dst, unm = leanops.bipartite_match(metric, 15, 4, backend=name)
    out, size = leanops.merge_wavg(x, None, src, dst, unm, 4, backend=name)
    assert torch.equal(out[:, :4], x[:, :4])
    assert torch.equal(size[:, :4], torch.ones(2, 4, device=device))
    assert (src >= 4).all() and (dst >= 4).all()
