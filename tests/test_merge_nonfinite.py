"""NaN and infinities on every merge op and backend, against the reference (docs/DESIGN.md's contract).

Metric: a row with a NaN or an infinity, or all zeros, has a NaN unit vector, so NaN similarity with every
token; NaN ranks above every number, ties (NaN with NaN too) go to the lower index. x: IEEE arithmetic,
except that a slot of total size 0 is 0.
"""
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import leanops
from leanops.reference import merge as ref

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
KINDS = ("nan", "inf", "-inf", "zero")


def _spoil(t: torch.Tensor, rows: torch.Tensor, kinds: list[str], seed: int) -> torch.Tensor:
    """Put one non-finite value (or a zero row) into the chosen token rows of ``t`` [B, N, C]."""
    g = torch.Generator().manual_seed(seed)
    t = t.clone()
    for (b, i), kind in zip(rows.tolist(), kinds):
        ch = int(torch.randint(0, t.shape[2], (1,), generator=g))
        if kind == "zero":
            t[b, i] = 0
        else:
            t[b, i, ch] = float(kind)
    return t


@st.composite
def spoiled_case(draw, max_n=40):
    bsz = draw(st.integers(1, 3))
    n = draw(st.integers(1, max_n))
    num_protected = draw(st.integers(0, min(n, 2)))
    r = draw(st.integers(0, n - num_protected))
    c = draw(st.integers(1, 12))
    count = draw(st.integers(1, bsz * n))
    flat = draw(st.lists(st.integers(0, bsz * n - 1), min_size=count, max_size=count, unique=True))
    rows = torch.tensor([[f // n, f % n] for f in flat])
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=count, max_size=count))
    return bsz, n, c, num_protected, r, rows, kinds, draw(st.integers(0, 2**31 - 1))


@given(case=spoiled_case())
@SETTINGS
def test_bipartite_match_nonfinite_metric_equals_reference(backend, case):
    name, device = backend
    bsz, n, c, num_protected, r, rows, kinds, seed = case
    g = torch.Generator().manual_seed(seed)
    metric = _spoil(torch.randn(bsz, n, c, generator=g, dtype=torch.float64), rows, kinds, seed)
    got = leanops.bipartite_match(metric.to(device), r, num_protected, backend=name)
    want = ref.bipartite_match(metric, r, num_protected)
    for gt, w in zip(got, want):
        assert torch.equal(gt.cpu(), w), (gt, w)
    # every slot written: src and unm together are exactly the A tokens (ranks are a permutation)
    a_idx, _ = ref.a_b_indices(n, num_protected)
    assert torch.equal(torch.cat(got[::2], 1).sort(1).values.cpu(), a_idx.expand(bsz, -1))


def test_nan_ranks_first_with_ties_to_the_lower_index(backend):
    """A zero row and a NaN row (A tokens 4 and 8) rank above every finite score, in index order; a NaN
    B token (7) is the best partner of every A token, as the first NaN."""
    name, device = backend
    g = torch.Generator().manual_seed(0)
    metric = torch.randn(2, 13, 6, generator=g, dtype=torch.float64)
    metric[0, 4] = 0
    metric[0, 8, 2] = float("nan")
    metric[1, 7, 0] = float("inf")
    src, dst, unm = (t.cpu() for t in leanops.bipartite_match(metric.to(device), 4, 1, backend=name))
    assert src[0, :2].tolist() == [4, 8]
    assert src[1].tolist() == [2, 4, 6, 8] and dst[1].tolist() == [7, 7, 7, 7] and unm[1].tolist() == [10, 12]


def test_all_nan_metric(backend):
    """Every score NaN: one big tie, broken by index; every output slot written."""
    name, device = backend
    metric = torch.full((2, 17, 3), float("nan"), device=device)
    src, dst, unm = leanops.bipartite_match(metric, 5, 1, backend=name)
    assert src.tolist() == [[2, 4, 6, 8, 10]] * 2 and dst.tolist() == [[1] * 5] * 2
    assert unm.tolist() == [[12, 14, 16]] * 2


@given(case=spoiled_case(max_n=30), use_size=st.booleans(), gated=st.booleans())
@SETTINGS
def test_merge_wavg_nonfinite_x_equals_reference(backend, case, use_size, gated):
    """Forward (values and sizes) and backward (x and gates), NaN compared as equal."""
    name, device = backend
    bsz, n, c, num_protected, r, rows, kinds, seed = case
    g = torch.Generator().manual_seed(seed)
    metric = torch.randn(bsz, n, 4, generator=g, dtype=torch.float64)
    x = _spoil(torch.randn(bsz, n, c, generator=g, dtype=torch.float64), rows, kinds, seed)
    size = torch.randint(0, 3, (bsz, n), generator=g).float() if use_size else None  # 0: padding
    src, dst, unm = ref.bipartite_match(metric, r, num_protected)
    cg = torch.randn(bsz, 1, c, generator=g, dtype=torch.float64) if gated else None
    tg = torch.randn(bsz, src.shape[1], 1, generator=g, dtype=torch.float64) if gated else None
    leaves = [t for t in (x, cg, tg) if t is not None]

    def run(fn, tensors):
        tensors = [t.clone().requires_grad_() for t in tensors]
        gates = tensors[1:] or [None, None]
        out, out_size = fn(tensors[0], size, src, dst, unm, num_protected, *gates)
        grads = torch.autograd.grad(out, tensors, torch.ones_like(out), allow_unused=True)
        return out, out_size, grads

    dev = lambda t: None if t is None else t.to(device)  # noqa: E731
    ours = run(lambda x, s, *rest: leanops.merge_wavg(x, dev(s), *(dev(t) for t in rest[:3]), rest[3],
                                                      *rest[4:], backend=name), [t.to(device) for t in leaves])
    want = run(ref.merge_wavg, leaves)
    torch.testing.assert_close(ours[0].cpu(), want[0], equal_nan=True, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours[1].cpu(), want[1], equal_nan=True)
    for got_g, want_g in zip(ours[2], want[2]):
        want_g = torch.zeros_like(got_g.cpu()) if want_g is None else want_g
        torch.testing.assert_close(got_g.cpu(), want_g, equal_nan=True, rtol=1e-9, atol=1e-9)


def test_unmerge_propagates_nonfinite(backend):
    name, device = backend
    xm = torch.randn(2, 4, 3, dtype=torch.float64)
    xm[0, 1, 0], xm[1, 2, 2], xm[1, 3, 1] = float("nan"), float("inf"), float("-inf")
    slot = torch.tensor([[0, 1, 1, 3, 2], [2, 2, 3, 0, 1]])
    xg = xm.to(device).requires_grad_()
    out = leanops.unmerge(xg, slot.to(device), backend=name)
    torch.testing.assert_close(out.cpu(), ref.unmerge(xm, slot), equal_nan=True)
    grad = torch.randn(2, 5, 3, dtype=torch.float64)
    grad[0, 2, 1], grad[1, 0, 0] = float("nan"), float("inf")
    (gx,) = torch.autograd.grad(out, xg, grad.to(device))
    xr = xm.clone().requires_grad_()
    (want,) = torch.autograd.grad(ref.unmerge(xr, slot), xr, grad)
    torch.testing.assert_close(gx.cpu(), want, equal_nan=True)
