"""Non-contiguous inputs on every merge op and backend (forward and backward), contiguous outputs as the
fake kernels say, and torch.compile through the ops."""
import pytest
import torch

import leanops
from leanops import _library
from leanops.reference import merge as ref

needs_cpp = pytest.mark.skipif(not _library.compiled_available(), reason="compiled library not built")


def _strided_like(t: torch.Tensor, how: str) -> torch.Tensor:
    """The same values as ``t`` in a non-contiguous view: 'T' (a transposed buffer), 'slice' (every other
    element of a buffer twice as long in the last dimension)."""
    if how == "T":
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
    wide[..., ::2] = t
    return wide[..., ::2]


@pytest.mark.parametrize("how", ["T", "slice"])
@pytest.mark.parametrize("r", [5, 0])
def test_non_contiguous_inputs_every_op(backend, how, r):
    name, device = backend
    g = torch.Generator().manual_seed(3)
    bsz, n, c, p = 2, 19, 6, 1
    metric = torch.randn(bsz, n, 8, generator=g, dtype=torch.float64).to(device)
    x = torch.randn(bsz, n, c, generator=g, dtype=torch.float64).to(device)
    size = (torch.randint(1, 4, (bsz, n), generator=g).float()).to(device)
    src, dst, unm = (t.to(device) for t in ref.bipartite_match(metric.cpu(), r, p))
    cg = torch.randn(bsz, 1, c, generator=g, dtype=torch.float64).to(device)
    tg = torch.randn(bsz, r, 1, generator=g, dtype=torch.float64).to(device)
    views = {k: _strided_like(v, how) for k, v in dict(metric=metric, x=x, size=size, src=src, dst=dst, unm=unm,
                                                          cg=cg, tg=tg).items()}
    assert not views["x"].is_contiguous() and not views["metric"].is_contiguous()

    got = leanops.bipartite_match(views["metric"], r, p, backend=name)
    for gt, w in zip(got, (src, dst, unm)):
        assert gt.is_contiguous() and torch.equal(gt, w)

    leaves = [views[k].detach().requires_grad_() for k in ("x", "cg", "tg")]  # strided leaves
    out, out_size = leanops.merge_wavg(leaves[0], views["size"], views["src"], views["dst"], views["unm"], p,
                                       leaves[1], leaves[2], backend=name)
    refs = [t.clone().requires_grad_() for t in (x, cg, tg)]
    want, want_size = ref.merge_wavg(refs[0], size, src, dst, unm, p, refs[1], refs[2])
    assert out.is_contiguous() and out_size.is_contiguous()
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_size, want_size)
    grad = _strided_like(torch.randn(want.shape, generator=g, dtype=torch.float64).to(device), how)
    ours = torch.autograd.grad(out, leaves, grad)
    theirs = torch.autograd.grad(want, refs, grad.contiguous(), allow_unused=True)
    for gt, w in zip(ours, theirs):
        torch.testing.assert_close(gt, torch.zeros_like(gt) if w is None else w, rtol=1e-12, atol=1e-12)

    slot = leanops.merge_slot_map(views["src"], views["dst"], views["unm"], p, n, backend=name)
    want_slot = ref.merge_slot_map(src, dst, unm, p, n)
    assert slot.is_contiguous() and torch.equal(slot, want_slot)
    xm = _strided_like(want.detach(), how).requires_grad_()
    back = leanops.unmerge(xm, _strided_like(want_slot, how), backend=name)
    assert back.is_contiguous()
    torch.testing.assert_close(back, ref.unmerge(want.detach(), want_slot))
    (gm,) = torch.autograd.grad(back, xm, _strided_like(torch.ones_like(back), how))
    counts = torch.zeros(want.shape[:2], dtype=torch.float64, device=device)
    counts.scatter_add_(1, want_slot, torch.ones(want_slot.shape, dtype=torch.float64, device=device))
    torch.testing.assert_close(gm[..., 0], counts)  # one gradient per token of the slot


def test_backward_ops_return_contiguous_for_strided_inputs(backend):
    """What the fake kernels promise (contiguous gradients), the kernels do, whatever the input strides."""
    name, device = backend
    suffix = "_triton" if name == "triton" else ""
    ops = torch.ops.leanops
    metric = torch.randn(2, 15, 4, device=device)
    src, dst, unm = (t.to(device) for t in ref.bipartite_match(metric.cpu(), 4, 1))
    x = _strided_like(torch.randn(2, 15, 6, device=device), "T")
    cg, tg = _strided_like(torch.randn(2, 1, 6, device=device), "slice"), torch.randn(2, 4, 1, device=device)
    size = torch.rand(2, 15, device=device) + 0.5
    _, size_out = ref.merge_wavg(x, size, src, dst, unm, 1)
    grad = _strided_like(torch.randn(2, 11, 6, device=device), "T")
    for outs in (getattr(ops, "merge_wavg_backward" + suffix)(grad, x, size, size_out, src, dst, unm, 1, cg, tg),
                 (getattr(ops, "unmerge_backward" + suffix)(_strided_like(torch.randn(2, 15, 6, device=device), "T"),
                                                            ref.merge_slot_map(src, dst, unm, 1, 15), 11),)):
        for t in outs:
            assert t.is_contiguous()


# ----------------------------------------------------------------------------- torch.compile
def _merge_step(x, size, cg, tg, suffix=""):
    ops = torch.ops.leanops
    metric = x[..., :16]
    src, dst, unm = getattr(ops, "bipartite_match" + suffix)(metric, 8, 1)
    out, out_size = getattr(ops, "merge_wavg" + suffix)(x, size, src, dst, unm, 1, cg, tg)
    slot = getattr(ops, "merge_slot_map" + suffix)(src, dst, unm, 1, x.shape[1])
    back = getattr(ops, "unmerge" + suffix)(out, slot)
    return out, out_size, back


def _check_compiled(compile_backend, suffix="", bsz=3, n=41, c=32):
    x = torch.randn(bsz, n, c)
    size = torch.rand(bsz, n) + 0.5
    cg, tg = torch.randn(bsz, 1, c), torch.randn(bsz, 8, 1)
    compiled = torch.compile(lambda *a: _merge_step(*a, suffix=suffix), backend=compile_backend, fullgraph=True)
    leaves = [t.clone().requires_grad_() for t in (x, cg, tg)]
    got = compiled(leaves[0], size, leaves[1], leaves[2])
    refs = [t.clone().requires_grad_() for t in (x, cg, tg)]
    want = _merge_step(refs[0], size, refs[1], refs[2], suffix)
    for gt, w in zip(got, want):
        torch.testing.assert_close(gt, w)
    (got[0].square().sum() + got[2].sum()).backward()
    (want[0].square().sum() + want[2].sum()).backward()
    for gt, w in zip(leaves, refs):
        torch.testing.assert_close(gt.grad, w.grad)


@needs_cpp
@pytest.mark.parametrize("compile_backend", ["eager", "aot_eager", "inductor"])
def test_torch_compile_fullgraph_cpp(compile_backend):
    torch._dynamo.reset()
    _check_compiled(compile_backend)


def test_torch_compile_triton(backend):
    """Triton ops: triton_ops on a GPU (traced into), opaque custom ops with fakes under the interpreter."""
    name, _ = backend
    if name != "triton":
        pytest.skip("Triton ops")
    if torch.cuda.is_available():
        pytest.skip("runs the CPU interpreter path; the GPU path is covered where a GPU exists")
    torch._dynamo.reset()
    _check_compiled("aot_eager", "_triton", bsz=2, n=17, c=20)
