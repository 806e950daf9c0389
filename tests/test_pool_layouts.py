"""jagged_attention_pool with non-contiguous inputs (sliced, transposed) on every backend, forward and
backward; opcheck of the forward and backward ops on such inputs (fake strides = kernel strides); and
torch.compile (forward and backward) where it runs here."""
import pytest
import torch
from conftest import BACKENDS, KERNEL_BACKENDS
from test_pool_ops import make_case

import leanops
from leanops.reference import pool as ref

IDS = [f"{b}-{d}" for b, d in BACKENDS]
KIDS = [f"{b}-{d}" for b, d in KERNEL_BACKENDS]
DIFF = ("q", "k", "v", "bias", "freq_c", "prior_logit", "prior_value")


def _strided(a):
    """The same values in non-contiguous tensors: transposed storage, every other column, expanded dims."""
    def transposed(x):  # stored [..., last, first] and viewed back: strides reversed
        return x.permute(*reversed(range(x.dim()))).contiguous().permute(*reversed(range(x.dim())))

    def sliced(x):  # every other element of a twice-as-wide last dim
        wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)
        wide[..., ::2] = x
        return wide[..., ::2]

    out = dict(a)
    out["q"] = transposed(a["q"])
    out["k"] = sliced(a["k"])
    out["v"] = transposed(a["v"])
    if a["bias"] is not None:
        out["bias"] = a["bias"].t().contiguous().t()
    if a["freq_c"] is not None:
        out["freq_c"] = sliced(a["freq_c"])
    if a["prior_value"] is not None:
        out["prior_value"] = sliced(a["prior_value"])
        out["prior_logit"] = a["prior_logit"].t().contiguous().t()
    out["offsets"] = sliced(a["offsets"])
    for key in ("q", "k", "v"):
        assert not out[key].is_contiguous()
    return out


def _forward_backward(backend, a):
    leaves = {k: a[k].detach().requires_grad_() for k in DIFF if a[k] is not None}
    out, lse = leanops.jagged_attention_pool(*{**a, **leaves}.values(), backend=backend)
    g = torch.Generator().manual_seed(0)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum() + lse.clamp_min(-1e30).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return out, lse, grads


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
@pytest.mark.parametrize("opts", [(False, False, False), (True, True, True)])
def test_non_contiguous_inputs(backend, opts):
    name, device = backend
    a = make_case([3, 0, 5, 1], 2, 5, 3, torch.float64, device, 4, *opts)
    s = _strided(a)
    got = _forward_backward(name, s)
    want = _forward_backward("reference", a)
    for x, y in zip(got[:2] + tuple(got[2]), want[:2] + tuple(want[2])):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)
    for g, x in zip(got[2], [s[k] for k in DIFF if s[k] is not None]):
        assert g.shape == x.shape


@pytest.mark.parametrize("backend", KERNEL_BACKENDS, ids=KIDS)
def test_opcheck_forward_and_backward_strided(backend):
    """(test_pool_ops.test_opcheck covers contiguous inputs.)"""
    name, device = backend
    suffix = "_triton" if name == "triton" else ""
    fwd = getattr(torch.ops.leanops, "jagged_attention_pool" + suffix)
    bwd = getattr(torch.ops.leanops, "jagged_attention_pool_backward" + suffix)
    for opts in [(False, False, False), (True, True, True)]:
        a = _strided(make_case([2, 0, 3], 2, 5, 3, torch.float32, device, 7, *opts))
        for key in ("q", "k", "v", "bias", "prior_value"):
            if a[key] is not None:
                a[key] = a[key].detach().requires_grad_()
        torch.library.opcheck(fwd, tuple(a.values()))
        out, lse = fwd(*a.values())
        det = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in a.items()}
        grad_out = torch.randn(out.shape[::-1]).permute(2, 1, 0)  # non-contiguous too
        torch.library.opcheck(bwd, (grad_out, torch.randn_like(lse), *det.values(), out.detach(), lse.detach()))
        grads = bwd(grad_out, None, *det.values(), out.detach(), lse.detach())
        assert all(g.is_contiguous() for g in grads)  # what the fake promises


def test_gradcheck_reference():
    a = make_case([2, 0, 4, 1], 2, 3, 2, torch.float64, "cpu", 3, True, True, True)
    keys = [k for k in DIFF if a[k] is not None]

    def f(*xs):
        out, lse = ref.jagged_attention_pool(*{**a, **dict(zip(keys, xs))}.values())
        return out, lse.clamp_min(-1e30)

    assert torch.autograd.gradcheck(f, tuple(a[k].detach().requires_grad_() for k in keys))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS, ids=KIDS)
def test_torch_compile_forward_and_backward(backend):
    """fullgraph compile through the public function (cpp: compiled op; triton on CPU: opaque custom op)."""
    name, device = backend
    a = make_case([2, 0, 7, 3], 2, 8, 4, torch.float32, device, 9, True, True, True)
    torch._dynamo.reset()

    def fn(q, k, v, bias, freq_c, prior_logit, prior_value):
        out, lse = leanops.jagged_attention_pool(q, k, v, a["offsets"], a["scale"], bias, freq_c, prior_logit,
                                                 prior_value, backend=name, validate=False)
        return (out * out).sum() + lse.clamp_min(-1e30).sum()

    inputs = [a[k].detach().requires_grad_() for k in DIFF]
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    got = compiled(*inputs)
    got_grads = torch.autograd.grad(got, inputs)
    want = fn(*inputs)
    want_grads = torch.autograd.grad(want, inputs)
    torch.testing.assert_close(got, want)
    for x, y in zip(got_grads, want_grads):
        torch.testing.assert_close(x, y)
