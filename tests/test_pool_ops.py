"""jagged_attention_pool: every backend against the reference (forward, backward), contracts, errors."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import leanops
from leanops import _library
from leanops.reference import pool as ref

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
OPTIONALS = ("bias", "freq_c", "prior")


def make_case(lengths, heads, d, dv, dtype, device, seed, with_bias, with_freq, with_prior):
    """Random op arguments (a dict in the op's argument order) for rows of the given lengths."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths, dtype=torch.long)
    offsets = leanops.lengths_to_offsets(lengths).to(device)
    bsz, t = len(lengths), int(lengths.sum())
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(device, dtype)  # noqa: E731
    args = dict(q=rnd(bsz, heads, d), k=rnd(t, heads, d), v=rnd(t, heads, dv), offsets=offsets, scale=d ** -0.5,
                bias=rnd(t, heads) if with_bias else None, freq_c=rnd(t, heads) if with_freq else None,
                prior_logit=rnd(bsz, heads) if with_prior else None,
                prior_value=rnd(bsz, heads, dv) if with_prior else None)
    return args


@st.composite
def pool_case(draw):
    lengths = draw(st.lists(st.integers(0, 9), min_size=0, max_size=6))
    return dict(lengths=lengths, heads=draw(st.integers(1, 3)), d=draw(st.integers(1, 40)),
                dv=draw(st.integers(1, 20)), seed=draw(st.integers(0, 2**31 - 1)),
                with_bias=draw(st.booleans()), with_freq=draw(st.booleans()), with_prior=draw(st.booleans()))


def _compare(got, want, tol):
    out, lse = got
    w_out, w_lse = want
    torch.testing.assert_close(out, w_out, rtol=tol, atol=tol)
    assert torch.equal(torch.isinf(lse), torch.isinf(w_lse))
    finite = torch.isfinite(w_lse)
    torch.testing.assert_close(lse[finite], w_lse[finite].to(lse.dtype), rtol=tol, atol=tol)


@given(case=pool_case())
@SETTINGS
def test_forward_equals_reference(backend, case):
    name, device = backend
    args = make_case(dtype=torch.float64, device=device, **case)
    got = leanops.jagged_attention_pool(*args.values(), backend=name)
    _compare(got, ref.jagged_attention_pool(*args.values()), 1e-10)


@given(case=pool_case())
@SETTINGS
def test_backward_equals_reference(backend, case):
    name, device = backend
    args = make_case(dtype=torch.float64, device=device, **case)
    diff = [k for k, v in args.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]

    def grads(fn):
        leaves = {k: args[k].detach().clone().requires_grad_() for k in diff}
        out, lse = fn(**{**args, **leaves})
        g = torch.Generator().manual_seed(1)
        loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype).to(out.device)).sum()
        loss = loss + torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse)).sum()
        if not loss.requires_grad:
            return []
        return torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)

    got = grads(lambda **a: leanops.jagged_attention_pool(*a.values(), backend=name))
    want = grads(lambda **a: ref.jagged_attention_pool(*a.values()))
    for g, w in zip(got, want):
        if w is None:
            assert g is None or bool((g == 0).all())
        else:
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_low_precision(backend, dtype, tol):
    name, device = backend
    args = make_case([3, 0, 17, 1, 64], 4, 32, 32, dtype, device, 0, True, True, True)
    got = leanops.jagged_attention_pool(*args.values(), backend=name)
    _compare(got, ref.jagged_attention_pool(*args.values()), tol)


@pytest.mark.parametrize("opts", [(), ("bias",), ("freq_c", "prior"), OPTIONALS])
def test_gradcheck(backend, opts):
    name, device = backend
    args = make_case([2, 0, 5, 1], 2, 3, 2, torch.float64, device, 3, "bias" in opts, "freq_c" in opts, "prior" in opts)
    keys = [k for k, v in args.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    leaves = tuple(args[k].detach().clone().requires_grad_() for k in keys)

    def f(*xs):
        out, lse = leanops.jagged_attention_pool(*{**args, **dict(zip(keys, xs))}.values(), backend=name)
        return out, torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))

    # the Triton interpreter takes ~0.3 s a call: full gradcheck (2 calls per input element) would take minutes,
    # fast mode checks the Jacobian along random directions with a few calls
    assert torch.autograd.gradcheck(f, leaves, fast_mode=name == "triton")


def test_empty_rows_and_prior_fallback(backend):
    """A row with no behaviour returns the prior value (lse = prior logit), or 0 and lse = -inf."""
    name, device = backend
    args = make_case([0, 2, 0], 2, 4, 3, torch.float32, device, 5, False, False, True)
    out, lse = leanops.jagged_attention_pool(*args.values(), backend=name)
    torch.testing.assert_close(out[0], args["prior_value"][0])
    torch.testing.assert_close(lse[2], args["prior_logit"][2])
    args = make_case([0, 2, 0], 2, 4, 3, torch.float32, device, 5, False, False, False)
    out, lse = leanops.jagged_attention_pool(*args.values(), backend=name)
    assert (out[0] == 0).all() and torch.isinf(lse[0]).all() and (lse[0] < 0).all()
    empty = make_case([], 2, 4, 3, torch.float32, device, 5, True, True, True)
    out, lse = leanops.jagged_attention_pool(*empty.values(), backend=name)
    assert out.shape == (0, 2, 3) and lse.shape == (0, 2)


def test_frequency_transform_caps_a_repeated_key(backend):
    """KFAtt-freq: w = 1/(sigma^2 + sigma'^2/n) grows with the count n but stays below 1/sigma^2 = e^s,
    where plain softmax pooling over n copies would give n e^s."""
    name, device = backend
    q = torch.ones(1, 1, 2, device=device)
    k = torch.ones(1, 1, 2, device=device) * 3
    v = torch.ones(1, 1, 1, device=device)
    offsets = torch.tensor([0, 1], device=device)
    weights = []
    for n in (1, 10, 1000):
        freq_c = torch.full((1, 1), 0.0 - torch.log(torch.tensor(float(n))).item(), device=device)
        _, lse = leanops.jagged_attention_pool(q, k, v, offsets, 1.0, freq_c=freq_c, backend=name)
        weights.append(torch.exp(lse).item())
    single = torch.exp(torch.tensor(6.0)).item()  # e^s with s = q.k = 6
    assert weights[0] < weights[1] < weights[2] <= single * (1 + 1e-5)
    torch.testing.assert_close(torch.tensor(weights[2]), torch.tensor(1 / (1 / single + 1 / 1000)))


def test_opcheck(backend):
    name, device = backend
    suffix = "_triton" if name == "triton" else ""
    for opts in [(), OPTIONALS]:
        a = make_case([2, 0, 3], 2, 5, 3, torch.float32, device, 7, "bias" in opts, "freq_c" in opts, "prior" in opts)
        for key in ("q", "k", "v", "bias", "prior_value"):
            if a[key] is not None:
                a[key].requires_grad_()
        op = getattr(torch.ops.leanops, "jagged_attention_pool" + suffix)
        torch.library.opcheck(op, tuple(a.values()))
        out, lse = op(*a.values())
        bwd = getattr(torch.ops.leanops, "jagged_attention_pool_backward" + suffix)
        det = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in a.items()}
        torch.library.opcheck(bwd, (torch.randn_like(out), torch.randn_like(lse), *det.values(), out.detach(),
                                    lse.detach()))


@pytest.mark.skipif(not _library.compiled_available(), reason="compiled library not built")
def test_torch_compile_fullgraph():
    a = make_case([2, 0, 7, 3], 2, 8, 4, torch.float32, "cpu", 9, True, True, True)
    fn = lambda *xs: torch.ops.leanops.jagged_attention_pool(*xs)  # noqa: E731
    got = torch.compile(fn, fullgraph=True)(*a.values())
    _compare(got, fn(*a.values()), 1e-6)


# ----------------------------------------------------------------------------- helpers
def test_jagged_from_padded_and_group_duplicates():
    padded = torch.arange(12).view(3, 4)
    values, offsets = leanops.jagged_from_padded(padded, torch.tensor([2, 0, 3]))
    assert values.tolist() == [0, 1, 8, 9, 10] and offsets.tolist() == [0, 2, 2, 5]
    first, counts, new_off = leanops.group_duplicates(torch.tensor([5, 3, 5, 5, 7, 1, 1, 2]), torch.tensor([0, 5, 7, 8]))
    assert first.tolist() == [0, 1, 4, 5, 7]  # rows keep the order of first appearance
    assert counts.tolist() == [3, 1, 1, 2, 1]
    assert new_off.tolist() == [0, 3, 4, 5]


# ----------------------------------------------------------------------------- bad input
def _good():
    return make_case([2, 0, 3], 2, 4, 3, torch.float32, "cpu", 0, True, True, True)


@pytest.mark.parametrize("change,msg,exc", [
    (dict(offsets=torch.tensor([1, 2, 2, 5])), "offsets must start at 0", ValueError),
    (dict(offsets=torch.tensor([0, 3, 2, 5])), "offsets must be non-decreasing", ValueError),
    (dict(offsets=torch.tensor([0, 2, 2, 4])), "offsets must end at T = 5", ValueError),
    (dict(offsets=torch.tensor([0, 2, 5])), "offsets must be 1-D", ValueError),
    (dict(offsets=torch.tensor([0, 2, 2, 5], dtype=torch.int32)), "offsets must be int64", TypeError),
    (dict(q=torch.randn(3, 2)), "q must be 3-D", ValueError),
    (dict(k=torch.randn(5, 2, 5)), "k must be", ValueError),
    (dict(v=torch.randn(4, 2, 3)), "v must be", ValueError),
    (dict(v=torch.randn(5, 2, 3, dtype=torch.float64)), "v must have q's dtype", TypeError),
    (dict(bias=torch.randn(5, 3)), "bias must be", ValueError),
    (dict(prior_value=None), "given together", ValueError),
    (dict(q=torch.randint(0, 2, (3, 2, 4))), "q must be float", TypeError),
    (dict(scale="1"), "scale must be a float", TypeError),
])
def test_bad_input(change, msg, exc):
    args = {**_good(), **change}
    with pytest.raises(exc, match=msg):
        leanops.jagged_attention_pool(*args.values())


@pytest.mark.skipif(not _library.compiled_available(), reason="compiled library not built")
@pytest.mark.parametrize("change,msg", [
    (dict(offsets=torch.tensor([1, 2, 2, 5])), "offsets must start at 0"),
    (dict(offsets=torch.tensor([0, 3, 2, 5])), "non-decreasing"),
    (dict(offsets=torch.tensor([0, 2, 2, 4])), "offsets must end at T = 5"),
    (dict(bias=torch.randn(5, 3)), "bias must have shape"),
])
def test_raw_op_bad_input(change, msg):
    args = {**_good(), **change}
    with pytest.raises(RuntimeError, match=msg):
        torch.ops.leanops.jagged_attention_pool(*args.values())


def test_check_finite_is_opt_in():
    args = _good()
    args["k"][1, 0, 2] = float("nan")
    leanops.jagged_attention_pool(*args.values())  # hot path: no scan
    with pytest.raises(ValueError, match=r"k holds a non-finite value at index \[1, 0, 2\]"):
        leanops.jagged_attention_pool(*args.values(), check_finite=True)


def test_benchmark_anchors_equal_the_reference_on_finite_inputs():
    """segment_attention_pool (eager jagged anchor) and padded_attention_pool compute the same pooling."""
    a = make_case([3, 0, 5, 1], 2, 4, 3, torch.float64, "cpu", 11, True, True, True)
    want_out, want_lse = ref.jagged_attention_pool(*a.values())
    out, lse = ref.segment_attention_pool(*a.values())
    torch.testing.assert_close(out, want_out)
    torch.testing.assert_close(lse, want_lse)
    lengths = a["offsets"].diff()
    k_pad = torch.zeros(4, 5, 2, 4, dtype=torch.float64)
    v_pad = torch.zeros(4, 5, 2, 3, dtype=torch.float64)
    b_pad = torch.zeros(4, 5, 2, dtype=torch.float64)
    f_pad = torch.zeros(4, 5, 2, dtype=torch.float64)
    for b in range(4):
        lo, hi = int(a["offsets"][b]), int(a["offsets"][b + 1])
        k_pad[b, : hi - lo], v_pad[b, : hi - lo] = a["k"][lo:hi], a["v"][lo:hi]
        b_pad[b, : hi - lo], f_pad[b, : hi - lo] = a["bias"][lo:hi], a["freq_c"][lo:hi]
    out, lse = ref.padded_attention_pool(a["q"], k_pad, v_pad, lengths, a["scale"], b_pad, f_pad, a["prior_logit"],
                                         a["prior_value"])
    torch.testing.assert_close(out, want_out)
    torch.testing.assert_close(lse, want_lse)
