"""Merge ops: when leanops equals ToMe's algorithm, r = 0 as the identity, the tie rule, opcheck, and clear
errors on bad input."""
import pytest
import torch

import leanops
from leanops import _library
from leanops.reference import merge as ref

needs_cpp = pytest.mark.skipif(not _library.compiled_available(), reason="compiled library not built")


# ----------------------------------------------------------------------------- ToMe's algorithm
@pytest.mark.parametrize("shape,r", [((1, 197, 64), 16), ((2, 50, 8), 24), ((2, 64, 16), 31), ((2, 11, 5), 3)])
def test_num_protected_1_equals_tome_algorithm(backend, shape, r):
    """One protected (class) token, no ties (random float64), r > 0: match + size-weighted merge is
    ToMe's published algorithm (``ref.tome_anchor_merge``, written from the paper), output order included."""
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


@pytest.mark.parametrize("n,r", [(31, 8), (30, 7), (12, 2)])
def test_num_protected_0_equals_tome_up_to_unmerged_order(backend, n, r):
    """Without a class token ToMe keeps its unmerged tokens in score order, leanops in index order:
    the merged B part is equal, the unmerged tokens are the same set in another order."""
    name, device = backend
    g = torch.Generator().manual_seed(n + r)
    metric = torch.randn(2, n, 9, generator=g, dtype=torch.float64).to(device)
    x = torch.randn(2, n, 4, generator=g, dtype=torch.float64).to(device)
    src, dst, unm = leanops.bipartite_match(metric, r, 0, backend=name)
    out, out_size = leanops.merge_wavg(x, None, src, dst, unm, 0, backend=name)
    want, want_size = ref.tome_anchor_merge(metric, x, None, r, class_token=False)
    n_unm = unm.shape[1]
    torch.testing.assert_close(out[:, n_unm:], want[:, n_unm:], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_size.double(), want_size[..., 0])
    by_first_channel = lambda t: t.gather(1, t[..., :1].argsort(1).expand_as(t))  # noqa: E731
    torch.testing.assert_close(by_first_channel(out[:, :n_unm]), by_first_channel(want[:, :n_unm]))
    # ... and the order differs: ToMe's follows the scores, which are not ascending in index here
    assert not torch.equal(out[:, :n_unm], want[:, :n_unm])


@pytest.mark.parametrize("n,num_protected,r", [(11, 1, 0), (10, 0, 0), (2, 1, 1), (3, 2, 1), (1, 0, 1), (1, 1, 0)])
def test_r_zero_is_the_identity_as_in_tome(backend, n, num_protected, r):
    """r = 0, or r clamped to 0 (no A or no B token), leaves tokens untouched and in order, as ToMe does;
    the slot map is the identity and the gradient passes straight through."""
    name, device = backend
    metric = torch.randn(2, n, 4, dtype=torch.float64, device=device)
    x = torch.randn(2, n, 3, dtype=torch.float64, device=device, requires_grad=True)
    size = torch.rand(2, n, device=device) + 0.5
    src, dst, unm = leanops.bipartite_match(metric, r, num_protected, backend=name)
    assert src.shape[1] == 0 and dst.shape[1] == 0
    out, out_size = leanops.merge_wavg(x, size, src, dst, unm, num_protected, backend=name)
    assert torch.equal(out, x) and torch.equal(out_size, size)
    slot = leanops.merge_slot_map(src, dst, unm, num_protected, n, backend=name)
    assert torch.equal(slot, torch.arange(n, device=device).expand(2, n))
    assert torch.equal(leanops.unmerge(out, slot, backend=name), x)
    grad = torch.randn_like(out)
    (gx,) = torch.autograd.grad(out, x, grad)
    assert torch.equal(gx, grad)
    if num_protected <= 1:
        want, want_size = ref.tome_anchor_merge(metric, x, size[..., None].double(), r, class_token=num_protected == 1)
        assert torch.equal(out, want) and torch.equal(out_size.double(), want_size[..., 0])


def _exact_tie_metric(bsz, n, seed):
    """Tokens drawn from 6 patterns with entries in {0, ±1/2} and norm 1: every cosine is an exact multiple
    of 1/4 in any summation order, so duplicates make exact ties on every backend."""
    patterns = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, -0.5, 0.5, -0.5], [0.5, 0.5, -0.5, -0.5],
                             [-0.5, -0.5, -0.5, -0.5], [0.5, 0.5, 0.5, -0.5], [0.5, -0.5, -0.5, 0.5]])
    g = torch.Generator().manual_seed(seed)
    return patterns[torch.randint(0, 6, (bsz, n), generator=g)].double()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("num_protected", [0, 1, 3])
def test_exact_ties_follow_the_tie_rule(backend, seed, num_protected):
    """Duplicate tokens: equal scores rank the lower A index first, equal similarities pick the lower B index."""
    name, device = backend
    metric = _exact_tie_metric(3, 41, seed)
    r = 12
    got = leanops.bipartite_match(metric.to(device), r, num_protected, backend=name)
    want = ref.bipartite_match(metric, r, num_protected)
    for g, w in zip(got, want):
        assert torch.equal(g.cpu(), w)
    # the rule itself, on the reference: scores with exact ties
    src, dst, _ = want
    unit = metric / metric.norm(dim=-1, keepdim=True)
    for b in range(3):
        best = [(float((unit[b, s] * unit[b, 1 - num_protected % 2 + num_protected::2]).sum(-1).max()), int(s))
                for s in src[b]]
        assert best == sorted(best, key=lambda t: (-t[0], t[1]))  # descending score, ascending index
        for s, d in zip(src[b].tolist(), dst[b].tolist()):
            sims = unit[b, s] @ unit[b].T
            b_tokens = [j for j in range(num_protected, 41) if j % 2 == 1]
            top = max(float(sims[j]) for j in b_tokens)
            assert d == min(j for j in b_tokens if float(sims[j]) == top)


def test_all_equal_tokens(backend):
    """Every score ties: src is the first r A tokens, all merge into the first B token."""
    name, device = backend
    metric = torch.full((2, 9, 4), 0.5, dtype=torch.float64, device=device)
    src, dst, unm = leanops.bipartite_match(metric, 3, 1, backend=name)
    assert src.tolist() == [[2, 4, 6]] * 2 and dst.tolist() == [[1, 1, 1]] * 2 and unm.tolist() == [[8]] * 2


# ----------------------------------------------------------------------------- opcheck
def _op_samples(suffix, device, r=6):
    metric = torch.randn(2, 23, 8, device=device)
    x = torch.randn(2, 23, 6, device=device, requires_grad=True)
    size = torch.rand(2, 23, device=device) + 0.5
    src, dst, unm = (t.to(device) for t in ref.bipartite_match(metric.cpu(), r, 1))
    cg = torch.randn(2, 1, 6, device=device, requires_grad=True)
    tg = torch.randn(2, r, 1, device=device, requires_grad=True)
    slot = ref.merge_slot_map(src.cpu(), dst.cpu(), unm.cpu(), 1, 23).to(device)
    m = 23 - r
    _, size_out = ref.merge_wavg(x.detach(), size, src, dst, unm, 1)
    ops = torch.ops.leanops
    op = lambda name: getattr(ops, name + suffix)  # noqa: E731
    return [
        (op("bipartite_match"), (metric, r, 1)),
        (op("merge_wavg"), (x, size, src, dst, unm, 1, cg, tg)),
        (op("merge_wavg"), (x, None, src, dst, unm, 1, None, None)),
        (op("merge_wavg_backward"), (torch.randn(2, m, 6, device=device), x.detach(), size, size_out, src, dst, unm,
                                     1, cg.detach(), tg.detach())),
        (op("merge_wavg_backward"), (torch.randn(2, m, 6, device=device), x.detach(), None, size_out, src, dst, unm,
                                     1, None, None)),
        (op("merge_slot_map"), (src, dst, unm, 1, 23)),
        (op("unmerge"), (torch.randn(2, m, 6, device=device, requires_grad=True), slot)),
        (op("unmerge_backward"), (torch.randn(2, 23, 6, device=device), slot, m)),
    ]


@pytest.mark.parametrize("r", [6, 0])
def test_opcheck_every_op(backend, r):
    name, device = backend
    suffix = "_triton" if name == "triton" else ""
    for op, args in _op_samples(suffix, device, r):
        torch.library.opcheck(op, args)


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
    (lambda m: (m, 3, 12), "num_protected must be <= 11", ValueError),
    (lambda m: (m, 3.0, 1), "r must be an int", TypeError),
    (lambda m: (m[..., :0], 3, 1), "C > 0", ValueError),
]


@pytest.mark.parametrize("make,msg,exc", BAD_MATCH)
def test_bipartite_match_bad_input(make, msg, exc):
    metric = torch.randn(2, 11, 4)
    with pytest.raises(exc, match=msg.replace("(", r"\(").replace(")", r"\)")):
        leanops.bipartite_match(*make(metric))


def test_num_protected_is_the_keyword():
    metric = torch.randn(2, 11, 4)
    got = leanops.bipartite_match(metric, 3, num_protected=2)
    assert torch.equal(got[0], ref.bipartite_match(metric, 3, 2)[0])
    with pytest.raises(TypeError):
        leanops.bipartite_match(metric, 3, protected=2)


@needs_cpp
@pytest.mark.parametrize("args,msg", [
    (lambda m: (m[0], 3, 1), "metric must be 3-D"),
    (lambda m: (m.long(), 3, 1), "metric must be float32"),
    (lambda m: (m, -1, 1), "r must be >= 0"),
    (lambda m: (m, 11, 1), r"r \(11\) is larger"),
    (lambda m: (m, 3, 12), r"num_protected \(12\) must be <="),
])
def test_raw_op_bad_input_names_argument(args, msg):
    with pytest.raises(RuntimeError, match=msg):
        torch.ops.leanops.bipartite_match(*args(torch.randn(2, 11, 4)))


def _merge_case(**change):
    metric, x, src, dst, unm = _good()
    args = dict(x=x, size=None, src_idx=src, dst_idx=dst, unm_idx=unm, num_protected=1, channel_gate=None,
                token_gate=None)
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
    (dict(num_protected=12), "num_protected must be <= 11", ValueError),
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


@needs_cpp
def test_raw_backward_op_checks_size_out_and_grad():
    _, x, src, dst, unm = _good()
    grad, size_out = torch.randn(2, 8, 4), torch.ones(2, 8)
    bw = torch.ops.leanops.merge_wavg_backward
    with pytest.raises(RuntimeError, match=r"size_out must be \[B, N - r\]"):
        bw(grad, x, None, torch.ones(2, 9), src, dst, unm, 1, None, None)
    with pytest.raises(RuntimeError, match="size_out must be float32"):
        bw(grad, x, None, size_out.double(), src, dst, unm, 1, None, None)
    with pytest.raises(RuntimeError, match=r"grad_out must be \[B, N - r, C\]"):
        bw(grad[:, :7], x, None, size_out, src, dst, unm, 1, None, None)


def test_slot_map_bad_input():
    _, _, src, dst, unm = _good()
    with pytest.raises(ValueError, match="unm_idx batch size 1"):
        leanops.merge_slot_map(src, dst, unm[:1], 1, 11)
    with pytest.raises(ValueError, match="do not fit n=13"):
        leanops.merge_slot_map(src, dst, unm, 1, 13)
    with pytest.raises(ValueError, match="num_protected must be <= 11"):
        leanops.merge_slot_map(src, dst, unm, 12, 11)


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
