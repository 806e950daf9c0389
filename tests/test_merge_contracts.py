"""Merge ops: ToMe equivalence, opcheck, torch.compile, and clear errors on bad input."""
import pytest
import torch

import leanops
from leanops import _library
from leanops.reference import merge as ref

needs_cpp = pytest.mark.skipif(not _library.compiled_available(), reason="compiled library not built")


@pytest.mark.parametrize("shape,r", [((4, 197, 64), 16), ((2, 50, 8), 24), ((3, 198, 16), 98), ((2, 11, 5), 0)])
def test_protected_1_equals_tome_algorithm(backend, shape, r):
    """With one protected (class) token, match + size-weighted merge is ToMe's published algorithm."""
    name, device = backend
    g = torch.Generator().manual_seed(sum(shape) + r)
    metric = torch.randn(*shape, generator=g, dtype=torch.float64).to(device)
    x = torch.randn(shape[0], shape[1], 12, generator=g, dtype=torch.float64).to(device)
    size = torch.randint(1, 5, (shape[0], shape[1]), generator=g).float().to(device)
    src, dst, unm = leanops.bipartite_match(metric, r, 1, backend=name)
    out, out_size = leanops.merge_wavg(x, size, src, dst, unm, 1, backend=name)
    want, want_size = ref.tome_anchor_merge(metric, x, size.double()[..., None], r, class_token=True)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_size.double(), want_size[..., 0])


def test_protected_0_equals_tome_without_class_token(backend):
    name, device = backend
    metric = torch.randn(2, 31, 9, dtype=torch.float64, device=device)
    x = torch.randn(2, 31, 4, dtype=torch.float64, device=device)
    src, dst, unm = leanops.bipartite_match(metric, 15, 0, backend=name)
    out, _ = leanops.merge_wavg(x, None, src, dst, unm, 0, backend=name)
    want, _ = ref.tome_anchor_merge(metric, x, None, 15, class_token=False)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)


def _op_samples(suffix, device):
    metric = torch.randn(2, 23, 8, device=device)
    x = torch.randn(2, 23, 6, device=device, requires_grad=True)
    size = torch.rand(2, 23, device=device) + 0.5
    src, dst, unm = ref.bipartite_match(metric.cpu(), 6, 1)
    src, dst, unm = src.to(device), dst.to(device), unm.to(device)
    cg = torch.randn(2, 1, 6, device=device, requires_grad=True)
    tg = torch.randn(2, 6, 1, device=device, requires_grad=True)
    slot = ref.merge_slot_map(src.cpu(), dst.cpu(), unm.cpu(), 1, 23).to(device)
    ops = torch.ops.leanops
    op = lambda name: getattr(ops, name + suffix)  # noqa: E731
    return [
        (op("bipartite_match"), (metric, 6, 1)),
        (op("merge_wavg"), (x, size, src, dst, unm, 1, cg, tg)),
        (op("merge_wavg"), (x, None, src, dst, unm, 1, None, None)),
        (op("merge_wavg_backward"), (torch.randn(2, 17, 6, device=device), x.detach(), size, src, dst, unm, 1,
                                     cg.detach(), tg.detach())),
        (op("merge_slot_map"), (src, dst, unm, 1, 23)),
        (op("unmerge"), (torch.randn(2, 17, 6, device=device, requires_grad=True), slot)),
        (op("unmerge_backward"), (torch.randn(2, 23, 6, device=device), slot, 17)),
    ]


def test_opcheck_every_op(backend):
    name, device = backend
    if name == "reference":
        pytest.skip("the reference is plain PyTorch")
    suffix = "_triton" if name == "triton" else ""
    for op, args in _op_samples(suffix, device):
        torch.library.opcheck(op, args)


@needs_cpp
def test_torch_compile_fullgraph_cpu():
    def merge_step(x, size):
        metric = x[..., :16]
        src, dst, unm = torch.ops.leanops.bipartite_match(metric, 8, 1)
        return torch.ops.leanops.merge_wavg(x, size, src, dst, unm, 1, None, None)

    x = torch.randn(3, 41, 32)
    size = torch.ones(3, 41)
    compiled = torch.compile(merge_step, fullgraph=True)
    got, got_size = compiled(x, size)
    want, want_size = merge_step(x, size)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_size, want_size)
    xg = x.clone().requires_grad_()
    compiled(xg, size)[0].sum().backward()
    xr = x.clone().requires_grad_()
    merge_step(xr, size)[0].sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad)


def test_empty_batch_works(backend):
    name, device = backend
    metric = torch.randn(0, 10, 4, device=device)
    src, dst, unm = leanops.bipartite_match(metric, 3, 1, backend=name)
    assert src.shape == (0, 3) and unm.shape == (0, 1)
    out, size = leanops.merge_wavg(torch.randn(0, 10, 5, device=device), None, src, dst, unm, 1, backend=name)
    assert out.shape == (0, 7, 5) and size.shape == (0, 7)


# ----------------------------------------------------------------------------- bad input
def _good():
    metric = torch.randn(2, 11, 4)
    src, dst, unm = ref.bipartite_match(metric, 3, 1)
    return metric, torch.randn(2, 11, 4), src, dst, unm


BAD_MATCH = [
    (lambda m: (m[0], 3, 1), "metric must be 3-D", ValueError),
    (lambda m: (m.long(), 3, 1), "metric must be float", TypeError),
    (lambda m: (m, -1, 1), "r must be >= 0", ValueError),
    (lambda m: (m, 11, 1), "r (11) is larger", ValueError),
    (lambda m: (m, 3, 12), "protected must be <= 11", ValueError),
    (lambda m: (m, 3.0, 1), "r must be an int", TypeError),
]


@pytest.mark.parametrize("make,msg,exc", BAD_MATCH)
def test_bipartite_match_bad_input(make, msg, exc):
    metric = torch.randn(2, 11, 4)
    with pytest.raises(exc, match=msg.replace("(", r"\(").replace(")", r"\)")):
        leanops.bipartite_match(*make(metric))


@needs_cpp
@pytest.mark.parametrize("args,msg", [
    (lambda m: (m[0], 3, 1), "metric must be 3-D"),
    (lambda m: (m.long(), 3, 1), "metric must be float32"),
    (lambda m: (m, -1, 1), "r must be >= 0"),
    (lambda m: (m, 11, 1), r"r \(11\) is larger"),
    (lambda m: (m, 3, 12), r"protected \(12\) must be <="),
])
def test_raw_op_bad_input_names_argument(args, msg):
    with pytest.raises(RuntimeError, match=msg):
        torch.ops.leanops.bipartite_match(*args(torch.randn(2, 11, 4)))


def _merge_case(**change):
    metric, x, src, dst, unm = _good()
    args = dict(x=x, size=None, src_idx=src, dst_idx=dst, unm_idx=unm, protected=1, channel_gate=None, token_gate=None)
    args.update(change)
    return args


BAD_MERGE = [
    (dict(x=torch.randn(11, 4)), "x must be 3-D", ValueError),
    (dict(x=torch.randint(0, 3, (2, 11, 4))), "x must be float", TypeError),
    (dict(size=torch.ones(2, 10)), "size must be", ValueError),
    (dict(size=torch.ones(2, 11, dtype=torch.float64)), "size must be float32", TypeError),
    (dict(src_idx=torch.zeros(3, 3, dtype=torch.long)), "src_idx batch size 3", ValueError),
    (dict(src_idx=torch.zeros(2, 3, dtype=torch.int32)), "src_idx must be int64", TypeError),
    (dict(dst_idx=torch.full((2, 3), 1, dtype=torch.long)[:, :2]), "same length", ValueError),
    (dict(src_idx=torch.full((2, 3), 40, dtype=torch.long)), "src_idx holds 40", ValueError),
    (dict(dst_idx=torch.full((2, 3), 2, dtype=torch.long)), "dst_idx holds 2, which is not a B token", ValueError),
    (dict(protected=12), "protected must be <= 11", ValueError),
    (dict(channel_gate=torch.ones(2, 1, 4)), "given together", ValueError),
    (dict(channel_gate=torch.ones(2, 1, 5), token_gate=torch.ones(2, 3, 1)), "channel_gate must be", ValueError),
    (dict(channel_gate=torch.ones(2, 1, 4), token_gate=torch.ones(2, 2, 1)), "token_gate must be", ValueError),
]


@pytest.mark.parametrize("change,msg,exc", BAD_MERGE)
def test_merge_wavg_bad_input(change, msg, exc):
    args = _merge_case(**change)
    with pytest.raises(exc, match=msg):
        leanops.merge_wavg(*args.values())


def test_duplicate_a_token_is_rejected():
    args = _merge_case()
    src = args["src_idx"].clone()
    args["unm_idx"] = args["unm_idx"].clone()
    args["unm_idx"][:, 0] = src[:, 0]
    with pytest.raises(ValueError, match="every A token exactly once"):
        leanops.merge_wavg(*args.values())


@needs_cpp
@pytest.mark.parametrize("change,msg", [
    (dict(src_idx=torch.full((2, 3), 40, dtype=torch.long)), "src_idx holds 40"),
    (dict(dst_idx=torch.full((2, 3), 2, dtype=torch.long)), "dst_idx holds 2"),
    (dict(size=torch.ones(2, 10)), "size must be"),
    (dict(x=torch.randn(11, 4)), "x must be 3-D"),
])
def test_raw_merge_op_checks_indices(change, msg):
    args = _merge_case(**change)
    with pytest.raises(RuntimeError, match=msg):
        torch.ops.leanops.merge_wavg(*args.values())


def test_unmerge_bad_input():
    xm = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match="slot_map holds values outside"):
        leanops.unmerge(xm, torch.full((2, 7), 5, dtype=torch.long))
    with pytest.raises(ValueError, match="slot_map batch size"):
        leanops.unmerge(xm, torch.zeros(3, 7, dtype=torch.long))
    with pytest.raises(TypeError, match="slot_map must be int64"):
        leanops.unmerge(xm, torch.zeros(2, 7, dtype=torch.int32))
    if _library.compiled_available():
        with pytest.raises(RuntimeError, match="slot_map holds 5"):
            torch.ops.leanops.unmerge(xm, torch.full((2, 7), 5, dtype=torch.long))


def test_unknown_backend_and_device_mismatch():
    metric = torch.randn(2, 11, 4)
    with pytest.raises(ValueError, match="backend must be one of"):
        leanops.bipartite_match(metric, 3, backend="fast")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="backend='cuda' needs"):
            leanops.bipartite_match(metric, 3, backend="cuda")
