"""Verify ops: the NaN/inf contract, validation errors, non-contiguous inputs, fakes, opcheck and torch.compile,
on every backend that runs here (the reference through the same wrappers)."""
import pytest
import torch
from conftest import BACKENDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import leanops
from leanops import _library
from leanops.reference import verify as ref

SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
NAN, INF = float("nan"), float("inf")


@pytest.fixture(params=BACKENDS, ids=[f"{b}-{d}" for b, d in BACKENDS])
def any_backend(request):
    return request.param


def _same(got, want):
    return all(torch.equal(x.cpu(), y.cpu()) for x, y in zip(got, want))


def _inputs(b, s, v, seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    cand = torch.randint(0, v, (b, s), generator=g)
    lens = torch.randint(0, s + 1, (b,), generator=g)
    logits = torch.randn(b, s + 1, v, generator=g)
    if s:
        logits[:, :s].scatter_(2, cand[..., None], 4.0)  # the target mostly agrees: positions are reached
    q = torch.softmax(torch.randn(b, s, v, generator=g), -1)
    u = torch.rand(b, s + 1, generator=g)
    return [t.to(device) for t in (cand, lens, logits, q, u)]


def _sprinkle(logits, seed, rate):
    """Put NaN, +inf and -inf at random places, and make some positions all -inf."""
    g = torch.Generator().manual_seed(seed)
    out = logits.clone()
    kind = torch.randint(0, 3, out.shape, generator=g)
    hit = torch.rand(out.shape, generator=g) < rate
    out[hit & (kind == 0)] = NAN
    out[hit & (kind == 1)] = INF
    out[hit & (kind == 2)] = -INF
    all_masked = torch.rand(out.shape[:-1], generator=g) < rate
    out[all_masked] = -INF
    return out


# ----------------------------------------------------------------------------- NaN / inf
@given(b=st.integers(1, 4), s=st.integers(0, 4), v=st.integers(1, 40), seed=st.integers(0, 2**31 - 1),
       rate=st.sampled_from([0.02, 0.1, 0.4]))
@SETTINGS
def test_greedy_nonfinite_follows_torch_argmax(backend, b, s, v, seed, rate):
    """First maximum, NaN above every number (the first NaN wins), +inf above numbers, all -inf -> 0."""
    name, device = backend
    cand, lens, logits, _, _ = _inputs(b, s, v, seed)
    logits = _sprinkle(logits, seed + 1, rate)
    cand[:, :s] = torch.where(torch.rand(b, s) < 0.8, logits[:, :s].argmax(-1), cand[:, :s])  # walk on
    want = ref.verify_greedy(cand, lens, logits)
    assert _same(leanops.verify_greedy(cand.to(device), lens.to(device), logits.to(device), backend=name), want)
    offsets = leanops.lengths_to_offsets(lens)
    flat = torch.cat([cand[i, : lens[i]] for i in range(b)])
    rows = torch.cat([logits[i, : lens[i] + 1] for i in range(b)])
    got = leanops.verify_greedy_ragged(flat.to(device), offsets.to(device), rows.to(device), backend=name)
    assert _same(got, want)


def test_greedy_nan_across_blocks(backend):
    """V above one Triton block (1024): a NaN in a later block beats a larger number in an earlier one,
    and the first NaN wins over a later one."""
    name, device = backend
    v = 2500
    logits = torch.randn(2, 2, v)
    logits[0, 0, 10] = 100.0
    logits[0, 0, 2000] = NAN
    logits[0, 0, 2400] = NAN
    logits[1, 0, 1500] = INF
    logits[1, 0, 2100] = INF
    cand, lens = torch.tensor([[2000], [1500]]), torch.tensor([1, 1])
    want = ref.verify_greedy(cand, lens, logits)
    assert want[0].tolist() == [1, 1]
    assert _same(leanops.verify_greedy(cand.to(device), lens.to(device), logits.to(device), backend=name), want)


@given(b=st.integers(1, 4), s=st.integers(0, 4), v=st.integers(1, 40), seed=st.integers(0, 2**31 - 1),
       rate=st.sampled_from([0.02, 0.1, 0.3]), temperature=st.sampled_from([0.6, 1.0]))
@SETTINGS
def test_sampling_nonfinite_equals_reference(any_backend, b, s, v, seed, rate, temperature):
    """A position with NaN or +inf, or all -inf, has no distribution: the row stops there with next_token -1
    (validate=False), or the wrapper raises naming target_logits (validate=True). -inf alone is a mask."""
    name, device = any_backend
    cand, lens, logits, q, u = _inputs(b, s, v, seed)
    logits = _sprinkle(logits, seed + 1, rate)
    want = ref.verify_sampling(cand, lens, q, logits, temperature, u)
    args = [t.to(device) for t in (cand, lens, q, logits)]
    got = leanops.verify_sampling(*args, temperature, uniforms=u.to(device), backend=name, validate=False)
    assert _same(got, want)
    if bool((want[1] < 0).any()):
        with pytest.raises(ValueError, match=r"target_logits\[\d+, \d+\] has no distribution"):
            leanops.verify_sampling(*args, temperature, uniforms=u.to(device), backend=name)
    else:
        assert _same(leanops.verify_sampling(*args, temperature, uniforms=u.to(device), backend=name), want)


def test_sampling_plus_inf_and_all_masked_rows(any_backend):
    """Hand cases: +inf at the first position; all -inf at the bonus position; -inf only masks."""
    name, device = any_backend
    v = 5
    logits = torch.zeros(3, 2, v)
    logits[0, 0, 2] = INF
    logits[1, 1] = -INF
    logits[2, :, 1:] = -INF  # only token 0 is left: always accepted, always drawn
    cand = torch.tensor([[2], [0], [0]])
    lens = torch.tensor([1, 1, 1])
    q = torch.full((3, 1, v), 0.2)
    u = torch.tensor([[0.5, 0.5], [0.0, 0.5], [0.99, 0.99]])
    args = [t.to(device) for t in (cand, lens, q, logits)]
    acc, nxt = leanops.verify_sampling(*args, 1.0, uniforms=u.to(device), backend=name, validate=False)
    assert acc.tolist() == [0, 1, 1] and nxt.tolist() == [-1, -1, 0]


# ----------------------------------------------------------------------------- validation
def _vote_args(device):
    drafts = torch.tensor([[[1, 2, 3], [1, 2, 4], [9, 0, 0]]], device=device)
    return drafts, torch.tensor([[3, 3, 1]], device=device), torch.tensor([0.3, 0.3, 0.5], device=device)


@pytest.mark.parametrize("bad,match", [
    ("token", r"drafts must hold tokens >= 0"),
    ("nan_weight", r"weights must be finite and >= 0"),
    ("neg_weight", r"weights must be finite and >= 0"),
    ("inf_weight", r"weights must be finite and >= 0"),
    ("len", r"draft_len holds values outside"),
])
def test_majority_vote_rejects_bad_values(any_backend, bad, match):
    name, device = any_backend
    drafts, lens, w = _vote_args(device)
    if bad == "token":
        drafts[0, 1, 2] = -1
    elif bad == "len":
        lens[0, 0] = 4
    else:
        w[1] = {"nan_weight": NAN, "neg_weight": -0.1, "inf_weight": INF}[bad]
    with pytest.raises(ValueError, match=match):
        leanops.majority_vote(drafts, lens, w, backend=name)


def test_majority_vote_negative_padding_is_not_a_token(any_backend):
    """Tokens past draft_len are padding (not validated, not read): -1 there changes nothing."""
    name, device = any_backend
    drafts, lens, w = _vote_args(device)
    drafts[0, 2, 1:] = -1
    assert leanops.majority_vote(drafts, lens, w, backend=name)[0].tolist() == [0]


@pytest.mark.skipif(not _library.compiled_available(), reason="compiled library not built")
def test_raw_cpp_ops_check_values():
    """The C++ CPU kernel checks every value it reads, with or without the wrapper."""
    drafts, lens, w = _vote_args("cpu")
    ops = torch.ops.leanops
    bad = drafts.clone()
    bad[0, 0, 1] = -1
    with pytest.raises(RuntimeError, match=r"drafts\[0, 0, 1\] = -1 is negative"):
        ops.majority_vote(bad, lens, w)
    with pytest.raises(RuntimeError, match="weights must be finite and >= 0"):
        ops.majority_vote(drafts, lens, torch.tensor([0.3, NAN, 0.5]))
    cand, clen, logits, q, u = _inputs(2, 3, 5, 0)
    clen = torch.tensor([3, 3])
    with pytest.raises(RuntimeError, match=r"uniforms\[\d, 0\] = 1 is not in \[0, 1\)"):
        ops.verify_sampling(cand, clen, q, logits, 1.0, torch.ones(2, 4))
    qbad = q.clone()
    qbad[0, 0, cand[0, 0]] = NAN
    with pytest.raises(RuntimeError, match=r"draft_probs\[0, 0, \d+\] = nan is not in \[0, 1\]"):
        ops.verify_sampling(cand, clen, qbad, logits, 1.0, u)
    with pytest.raises(RuntimeError, match="offsets must be non-decreasing"):
        ops.verify_greedy_ragged(torch.zeros(3, dtype=torch.long), torch.tensor([0, 2, 1, 3]), torch.zeros(6, 5))


def test_sampling_rejects_bad_probabilities_and_uniforms(any_backend):
    name, device = any_backend
    cand, _, logits, q, u = _inputs(2, 3, 5, 0, device)
    lens = torch.tensor([3, 3], device=device)
    for value in (NAN, -0.1, 1.5):
        qbad = q.clone()
        qbad[1, 2, cand[1, 2]] = value
        with pytest.raises(ValueError, match=r"draft_probs must be probabilities in \[0, 1\]"):
            leanops.verify_sampling(cand, lens, qbad, logits, uniforms=u, backend=name)
    for value in (1.0, -0.5, NAN):
        ubad = u.clone()
        ubad[0, 3] = value
        with pytest.raises(ValueError, match=r"uniforms must lie in \[0, 1\)"):
            leanops.verify_sampling(cand, lens, q, logits, uniforms=ubad, backend=name)


def test_sampling_checks_the_residual_row(any_backend):
    """A NaN in the draft row of a rejection (not at the candidate token) is found too."""
    name, device = any_backend
    v = 4
    logits = torch.zeros(1, 2, v)
    cand, lens = torch.tensor([[0]]), torch.tensor([1])
    q = torch.tensor([[[1.0, 0.0, 0.0, NAN]]])  # q(x) = 1 > p(x) = 1/4: rejected with u = 0.9
    u = torch.tensor([[0.9, 0.5]])
    args = [t.to(device) for t in (cand, lens, q, logits)]
    with pytest.raises((ValueError, RuntimeError), match="draft_probs"):  # C++ CPU raises from the kernel
        leanops.verify_sampling(*args, uniforms=u.to(device), backend=name)


@pytest.mark.parametrize("what", ["draft_probs", "uniforms", "target_logits", "candidate_len"])
def test_sampling_rejects_wrong_device_dtype_shape(any_backend, what):
    """Device checks cannot put a CPU tensor beside a CUDA one without a GPU; a meta tensor stands in."""
    name, device = any_backend
    cand, lens, logits, q, u = _inputs(2, 3, 5, 0, device)
    args = dict(candidate_len=lens, draft_probs=q, target_logits=logits, uniforms=u)
    args[what] = args[what].to("meta")
    with pytest.raises(ValueError, match=f"{what} is on meta but candidate is on"):
        leanops.verify_sampling(cand, args["candidate_len"], args["draft_probs"], args["target_logits"],
                                uniforms=args["uniforms"], backend=name)
    with pytest.raises(TypeError, match="uniforms must be a floating tensor"):
        leanops.verify_sampling(cand, lens, q, logits, uniforms=(u * 10).long(), backend=name)
    with pytest.raises(TypeError, match="draft_probs must be float32, float64, float16 or bfloat16"):
        leanops.verify_sampling(cand, lens, q.long(), logits, uniforms=u, backend=name)
    with pytest.raises(ValueError, match=r"uniforms must be \[B, S\+1\]"):
        leanops.verify_sampling(cand, lens, q, logits, uniforms=u[:, :2], backend=name)


def test_ragged_rejects_bad_offsets_and_devices(any_backend):
    name, device = any_backend
    cands = torch.zeros(3, dtype=torch.long, device=device)
    logits = torch.zeros(5, 4, device=device)
    for off in ([1, 3], [0, 2], [0, 3, 2, 3]):
        rows = torch.zeros(3 + len(off) - 1, 4, device=device)
        with pytest.raises(ValueError, match="offsets must start at 0, be non-decreasing and end at T = 3"):
            leanops.verify_greedy_ragged(cands, torch.tensor(off, device=device), rows, backend=name)
    off = torch.tensor([0, 3], device=device)
    with pytest.raises(ValueError, match="offsets is on meta but candidates is on"):
        leanops.verify_greedy_ragged(cands, off.to("meta"), logits[:4], backend=name)
    with pytest.raises(ValueError, match="target_logits is on meta but candidates is on"):
        leanops.verify_greedy_ragged(cands, off, logits[:4].to("meta"), backend=name)
    with pytest.raises(TypeError, match="offsets must be int64"):
        leanops.verify_greedy_ragged(cands, off.int(), logits[:4], backend=name)
    with pytest.raises(ValueError, match=r"candidates holds values outside \[0, 4\)"):
        leanops.verify_greedy_ragged(cands + 7, off, logits[:4], backend=name)


# ----------------------------------------------------------------------------- layouts, fakes, opcheck, compile
def _strided(t):
    """The same values in a non-contiguous tensor (every other element of a wider buffer)."""
    wide = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device) if t.dim() else t.clone()
    if t.dim() == 0:
        return wide
    wide[..., ::2] = t
    out = wide[..., ::2]
    assert not out.is_contiguous() or out.numel() <= 1
    return out


def test_non_contiguous_inputs(any_backend):
    name, device = any_backend
    cand, lens, logits, q, u = _inputs(3, 4, 9, 5, device)
    want_g = ref.verify_greedy(cand, lens, logits)
    want_s = ref.verify_sampling(cand, lens, q, logits, 0.8, u)
    nc = [_strided(t) for t in (cand, lens, logits, q, u)]
    assert _same(leanops.verify_greedy(nc[0], nc[1], nc[2], backend=name), want_g)
    assert _same(leanops.verify_sampling(nc[0], nc[1], nc[3], nc[2], 0.8, uniforms=nc[4], backend=name), want_s)
    logits_t = logits.transpose(1, 2).contiguous().transpose(1, 2)  # a transposed layout, too
    assert _same(leanops.verify_greedy(cand, lens, logits_t, backend=name), want_g)
    offsets = leanops.lengths_to_offsets(lens.cpu()).to(device)
    flat = torch.cat([cand[i, : lens[i]] for i in range(3)])
    rows = torch.cat([logits[i, : lens[i] + 1] for i in range(3)])
    assert _same(leanops.verify_greedy_ragged(_strided(flat), _strided(offsets), _strided(rows), backend=name),
                 want_g)
    drafts = torch.randint(0, 2, (3, 4, 5), device=device)
    dlen = torch.randint(0, 6, (3, 4), device=device)
    w = torch.rand(3, 4, device=device)
    want = ref.majority_vote(drafts, dlen, w)
    assert _same(leanops.majority_vote(_strided(drafts), _strided(dlen), _strided(w), backend=name), want)
    assert _same(leanops.majority_vote(drafts, dlen, w.t().contiguous().t(), backend=name), want)


def _op_cases(device):
    cand, lens, logits, q, u = _inputs(3, 4, 9, 1, device)
    offsets = leanops.lengths_to_offsets(lens.cpu()).to(device)
    flat = torch.cat([cand[i, : lens[i]] for i in range(3)])
    rows = torch.cat([logits[i, : lens[i] + 1] for i in range(3)])
    drafts = torch.randint(0, 3, (3, 4, 5), device=device)
    dlen = torch.randint(0, 6, (3, 4), device=device)
    return {
        "verify_greedy": [(cand, lens, logits), (_strided(cand), lens, _strided(logits))],
        "verify_sampling": [(cand, lens, q, logits, 0.8, u), (cand, lens, _strided(q), logits, 1.3, _strided(u))],
        "verify_greedy_ragged": [(flat, offsets, rows), (flat[:0], torch.zeros(1, dtype=torch.long, device=device),
                                                         rows[:0])],
        "majority_vote": [(drafts, dlen, torch.rand(4, device=device)),
                          (drafts[:0], dlen[:0], torch.rand(0, 4, device=device))],
    }


def test_opcheck_and_fakes_match_kernels(backend):
    """opcheck on every op; the fakes give the kernels' shapes, dtypes and (contiguous) strides."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    name, device = backend
    suffix = "_triton" if name == "triton" else ""
    for op_name, cases in _op_cases(device).items():
        op = getattr(torch.ops.leanops, op_name + suffix)
        for args in cases:
            torch.library.opcheck(op, args)
            real = op(*args)
            with FakeTensorMode(allow_non_fake_inputs=True) as mode:
                fake = op(*[mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args])
            for r, f in zip(real, fake):
                assert (r.shape, r.dtype, r.stride()) == (f.shape, f.dtype, f.stride()), op_name
                assert r.is_contiguous()


def test_torch_compile_fullgraph(backend):
    """The wrappers (validate=False: no host syncs) trace into one graph with every op."""
    name, device = backend
    cases = _op_cases(device)

    def all_ops(g, s, r, m):
        out = leanops.verify_greedy(*g, backend=name, validate=False)
        out += leanops.verify_sampling(*s[:4], s[4], uniforms=s[5], backend=name, validate=False)
        out += leanops.verify_greedy_ragged(*r, backend=name, validate=False)
        return out + leanops.majority_vote(*m, backend=name, validate=False)

    args = [cases[k][0] for k in ("verify_greedy", "verify_sampling", "verify_greedy_ragged", "majority_vote")]
    torch._dynamo.reset()
    compiled = torch.compile(all_ops, fullgraph=True, backend="aot_eager")
    assert _same(compiled(*args), all_ops(*args))
    # with validate=True the wrapper syncs (value checks): it still compiles, with graph breaks
    eager = leanops.verify_greedy(*args[0], backend=name)
    assert _same(torch.compile(lambda *a: leanops.verify_greedy(*a, backend=name), backend="aot_eager")(*args[0]),
                 eager)
