"""Every merge backend against the pure-PyTorch reference, on random and edge shapes."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import leanops
from leanops.reference import merge as ref

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def merge_case(draw, max_n=70):
    bsz = draw(st.integers(0, 3))
    n = draw(st.integers(1, max_n))
    protected = draw(st.integers(0, min(n, 4)))
    r = draw(st.integers(0, n - protected))
    c = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    return bsz, n, c, protected, r, seed


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
    bsz, n, c, protected, r, seed = case
    metric, _, _ = _inputs(bsz, n, c, seed, torch.float64, device)
    got = leanops.bipartite_match(metric, r, protected, backend=name)
    want = ref.bipartite_match(metric.cpu(), r, protected)
    for g, w in zip(got, want):
        assert g.dtype == torch.int64
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
def test_merge_wavg_equals_reference(backend, case, use_size, gated):
    name, device = backend
    bsz, n, c, protected, r, seed = case
    metric, x, size = _inputs(bsz, n, c, seed, torch.float64, device)
    src, dst, unm = ref.bipartite_match(metric.cpu(), r, protected)
    src, dst, unm = src.to(device), dst.to(device), unm.to(device)
    cg = tg = None
    if gated:
        cg = torch.randn(bsz, 1, x.shape[2], dtype=x.dtype, device=device)
        tg = torch.randn(bsz, src.shape[1], 1, dtype=x.dtype, device=device)
    size = size if use_size else None
    out, out_size = leanops.merge_wavg(x, size, src, dst, unm, protected, cg, tg, backend=name)
    want, want_size = ref.merge_wavg(x, size, src, dst, unm, protected, cg, tg)
    assert out.shape == (bsz, n - src.shape[1], x.shape[2]) and out_size.dtype == torch.float32
    torch.testing.assert_close(out, want, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out_size, want_size)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_merge_wavg_low_precision(backend, dtype):
    name, device = backend
    metric, x, size = _inputs(3, 61, 24, 1, dtype, device)
    src, dst, unm = leanops.bipartite_match(metric, 20, 1, backend=name)
    cg = torch.randn(3, 1, x.shape[2], device=device).to(dtype)
    tg = torch.randn(3, 20, 1, device=device).to(dtype)
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


@given(case=merge_case(max_n=40))
@SETTINGS
def test_slot_map_and_unmerge_equal_reference(backend, case):
    name, device = backend
    bsz, n, c, protected, r, seed = case
    metric, x, _ = _inputs(bsz, n, c, seed, torch.float64, device)
    src, dst, unm = ref.bipartite_match(metric.cpu(), r, protected)
    src, dst, unm = src.to(device), dst.to(device), unm.to(device)
    slot = leanops.merge_slot_map(src, dst, unm, protected, n, backend=name)
    want = ref.merge_slot_map(src.cpu(), dst.cpu(), unm.cpu(), protected, n)
    assert torch.equal(slot.cpu(), want)
    merged, _ = ref.merge_wavg(x, None, src, dst, unm, protected)
    back = leanops.unmerge(merged, slot, backend=name)
    torch.testing.assert_close(back, ref.unmerge(merged, slot))
    # unmerged and protected tokens come back exactly
    keep = torch.cat([torch.arange(protected, device=device).expand(bsz, -1), unm], 1)
    torch.testing.assert_close(back.gather(1, keep[..., None].expand(-1, -1, x.shape[2])),
                               x.gather(1, keep[..., None].expand(-1, -1, x.shape[2])))


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


@pytest.mark.parametrize("n,protected,r", [(13, 1, 4), (12, 2, 5), (9, 0, 4), (7, 3, 2)])
def test_gradcheck_merge_wavg(backend, n, protected, r):
    name, device = backend
    metric, x, size = _inputs(2, n, 5, n, torch.float64, device)
    src, dst, unm = ref.bipartite_match(metric.cpu(), r, protected)
    src, dst, unm = src.to(device), dst.to(device), unm.to(device)
    x = x.requires_grad_()
    cg = torch.randn(2, 1, x.shape[2], dtype=torch.float64, device=device, requires_grad=True)
    tg = torch.randn(2, src.shape[1], 1, dtype=torch.float64, device=device, requires_grad=True)
    f = lambda x, cg, tg: leanops.merge_wavg(x, size, src, dst, unm, protected, cg, tg, backend=name)[0]  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, cg, tg))
    f = lambda x: leanops.merge_wavg(x, None, src, dst, unm, protected, backend=name)[0]  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,))


def test_gradcheck_unmerge(backend):
    name, device = backend
    slot = torch.tensor([[0, 2, 1, 2, 0], [1, 1, 1, 0, 2]], device=device)
    xm = torch.randn(2, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: leanops.unmerge(t, slot, backend=name), (xm,))


def test_protected_tokens_stay_first_untouched(backend):
    """TempMe keeps one class token per frame: several protected tokens pass through unchanged."""
    name, device = backend
    metric, x, _ = _inputs(2, 40, 6, 11, torch.float32, device)
    src, dst, unm = leanops.bipartite_match(metric, 15, 4, backend=name)
    out, size = leanops.merge_wavg(x, None, src, dst, unm, 4, backend=name)
    assert torch.equal(out[:, :4], x[:, :4])
    assert torch.equal(size[:, :4], torch.ones(2, 4, device=device))
    assert (src >= 4).all() and (dst >= 4).all()
