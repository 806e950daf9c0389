"""Verify ops (Minions): every backend against the reference, losslessness of sampling, errors."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import leanops
from leanops import _library
from leanops.reference import verify as ref

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))


LENS = st.sampled_from(["random", "zero", "full"])  # edge lengths 0 and S for every row, or random


def _lengths(mode, shape, s, g):
    if mode == "zero":
        return torch.zeros(shape, dtype=torch.long)
    if mode == "full":
        return torch.full(shape, s)
    return torch.randint(0, s + 1, shape, generator=g)


@st.composite
def vote_case(draw):
    return dict(b=draw(st.integers(0, 4)), k=draw(st.integers(1, 5)), s=draw(st.integers(0, 6)),
                vocab=draw(st.integers(1, 3)), seed=draw(st.integers(0, 2**31 - 1)), per_row=draw(st.booleans()),
                lens=draw(LENS))


@given(case=vote_case())
@SETTINGS
def test_majority_vote_equals_reference(backend, case):
    name, device = backend
    g = torch.Generator().manual_seed(case["seed"])
    b, k, s = case["b"], case["k"], case["s"]
    drafts = torch.randint(0, case["vocab"], (b, k, s), generator=g).to(device)
    lens = _lengths(case["lens"], (b, k), s, g).to(device)
    w = torch.rand((b, k) if case["per_row"] else (k,), generator=g).to(device)
    got = leanops.majority_vote(drafts, lens, w, backend=name)
    want = ref.majority_vote(drafts.cpu(), lens.cpu(), w.cpu())
    for x, y in zip(got, want):
        assert torch.equal(x.cpu(), y)


def test_majority_vote_hand_example(backend):
    """Drafts a-b-c (w .3), a-b-d (w .3), x (w .5): the prefix a-b weighs .6 > .5; then c vs d tie, lower index."""
    name, device = backend
    drafts = torch.tensor([[[1, 2, 3], [1, 2, 4], [9, 0, 0]]], device=device)
    lens = torch.tensor([[3, 3, 1]], device=device)
    winner, cand, cand_len = leanops.majority_vote(drafts, lens, torch.tensor([0.3, 0.3, 0.5], device=device),
                                                   backend=name)
    assert winner.tolist() == [0] and cand.tolist() == [[1, 2, 3]] and cand_len.tolist() == [3]
    winner, _, _ = leanops.majority_vote(drafts, lens, torch.tensor([0.2, 0.2, 0.5], device=device), backend=name)
    assert winner.tolist() == [2]


@st.composite
def verify_case(draw):
    return dict(b=draw(st.integers(0, 5)), s=draw(st.integers(0, 6)), v=draw(st.integers(1, 70)),
                seed=draw(st.integers(0, 2**31 - 1)), boost=draw(st.booleans()), lens=draw(LENS))


def _verify_inputs(case, device, dtype=torch.float32):
    g = torch.Generator().manual_seed(case["seed"])
    b, s, v = case["b"], case["s"], case["v"]
    cand = torch.randint(0, v, (b, s), generator=g)
    lens = _lengths(case.get("lens", "random"), (b,), s, g)
    logits = torch.randn(b, s + 1, v, generator=g)
    if case["boost"] and s:  # drafts that the target mostly agrees with
        logits[:, :s].scatter_(2, cand[..., None], 4.0)
    q = torch.softmax(torch.randn(b, s, v, generator=g), -1)
    u = torch.rand(b, s + 1, generator=g)
    return [t.to(device) for t in (cand, lens, logits.to(dtype), q, u)]


@given(case=verify_case())
@SETTINGS
def test_verify_greedy_and_ragged_equal_reference(backend, case):
    name, device = backend
    cand, lens, logits, _, _ = _verify_inputs(case, device)
    want = ref.verify_greedy(cand.cpu(), lens.cpu(), logits.cpu())
    got = leanops.verify_greedy(cand, lens, logits, backend=name)
    assert all(torch.equal(x.cpu(), y) for x, y in zip(got, want))
    offsets = leanops.lengths_to_offsets(lens.cpu()).to(device)
    flat = torch.cat([cand[i, : lens[i]] for i in range(cand.shape[0])]) if cand.shape[0] else cand.new_zeros(0)
    rows = torch.cat([logits[i, : lens[i] + 1] for i in range(cand.shape[0])]) if cand.shape[0] else \
        logits.new_zeros(0, logits.shape[2])
    got = leanops.verify_greedy_ragged(flat, offsets, rows, backend=name)
    assert all(torch.equal(x.cpu(), y) for x, y in zip(got, want))


@given(case=verify_case(), temperature=st.sampled_from([0.5, 1.0, 1.7]))
@SETTINGS
def test_verify_sampling_equals_reference(backend, case, temperature):
    name, device = backend
    cand, lens, logits, q, u = _verify_inputs(case, device)
    got = leanops.verify_sampling(cand, lens, q, logits, temperature, uniforms=u, backend=name)
    want = ref.verify_sampling(cand.cpu(), lens.cpu(), q.cpu(), logits.cpu(), temperature, u.cpu())
    assert all(torch.equal(x.cpu(), y) for x, y in zip(got, want))


@pytest.mark.parametrize("v", [2, 7, 300])
def test_verify_sampling_with_top_p_masked_logits(backend, v):
    """Top-p leaves -inf logits (and zero draft probabilities): every backend must skip them, not NaN."""
    name, device = backend
    g = torch.Generator().manual_seed(v)
    b, s = 64, 4
    logits = torch.randn(b, s + 1, v, generator=g)
    masked = torch.rand(b, s + 1, v, generator=g) < 0.6
    masked[..., 0] = False  # a nucleus is never empty
    masked[: b // 4, :, :] = torch.arange(v) > 0  # rows whose first logits are all masked but the first
    logits = logits.masked_fill(masked, float("-inf"))
    q = torch.softmax(torch.randn(b, s, v, generator=g).masked_fill(masked[:, :s], float("-inf")), -1)
    cand = torch.multinomial(q.reshape(-1, v), 1, generator=g).view(b, s)
    lens = torch.randint(0, s + 1, (b,), generator=g)
    u = torch.rand(b, s + 1, generator=g)
    want = ref.verify_sampling(cand, lens, q, logits, 1.0, u)
    got = leanops.verify_sampling(*[t.to(device) for t in (cand, lens, q, logits)], 1.0, uniforms=u.to(device),
                                  backend=name)
    assert all(torch.equal(x.cpu(), y) for x, y in zip(got, want))
    assert not bool(masked[torch.arange(b), want[0].clamp_max(s), want[1]].any())  # never a masked token


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_logits(backend, dtype):
    name, device = backend
    case = dict(b=4, s=5, v=300, seed=3, boost=True)
    cand, lens, logits, q, u = _verify_inputs(case, device, dtype)
    assert all(torch.equal(x.cpu(), y) for x, y in zip(leanops.verify_greedy(cand, lens, logits, backend=name),
                                                       ref.verify_greedy(cand.cpu(), lens.cpu(), logits.cpu())))
    got = leanops.verify_sampling(cand, lens, q, logits, 1.0, uniforms=u, backend=name)
    want = ref.verify_sampling(cand.cpu(), lens.cpu(), q.cpu(), logits.cpu(), 1.0, u.cpu())
    assert all(torch.equal(x.cpu(), y) for x, y in zip(got, want))


def test_verify_sampling_is_lossless(backend):
    """Chi-square over many rows: the first emitted token follows the target distribution, not the draft's."""
    name, device = backend
    g = torch.Generator().manual_seed(0)
    v, s, n = 6, 3, 20000 if name != "triton" else 1000  # the interpreter runs one program per row
    target_logits = torch.randn(s + 1, v, generator=g)
    q = torch.softmax(2 * torch.randn(s, v, generator=g), -1)
    cand = torch.multinomial(q, n, replacement=True, generator=g).T.contiguous()
    lens = torch.full((n,), s)
    u = torch.rand(n, s + 1, generator=g)
    args = [t.to(device) for t in (cand, lens, q.expand(n, s, v).contiguous(),
                                   target_logits.expand(n, s + 1, v).contiguous())]
    accepted, nxt = leanops.verify_sampling(*args, 1.0, uniforms=u.to(device), backend=name)
    first = torch.where(accepted.cpu() >= 1, cand[:, 0], nxt.cpu())
    observed = torch.bincount(first, minlength=v).double()
    expected = torch.softmax(target_logits[0].double(), -1) * n
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 20.5  # chi-square, 5 degrees of freedom, p = 0.001
    draft_expected = q[0].double() * n  # and it is not the draft's distribution
    assert float(((observed - draft_expected) ** 2 / draft_expected).sum()) > 36  # p < 1e-6 for the draft's


# ----------------------------------------------------------------------------- bad input
def _good():
    return _verify_inputs(dict(b=2, s=3, v=5, seed=0, boost=False), "cpu")


@pytest.mark.parametrize("make,msg,exc", [
    (lambda c, l, lg: (c.float(), l, lg), "candidate must be int64", TypeError),
    (lambda c, l, lg: (c, l[:1], lg), "candidate_len must be", ValueError),
    (lambda c, l, lg: (c, l, lg[:, :3]), "target_logits must be", ValueError),
    (lambda c, l, lg: (c, torch.tensor([0, 7]), lg), "candidate_len holds values outside", ValueError),
    (lambda c, l, lg: (torch.full_like(c, 9), torch.tensor([3, 3]), lg), "candidate holds values outside", ValueError),
    (lambda c, l, lg: (c, l, lg.long()), "target_logits must be float", TypeError),
])
def test_verify_greedy_bad_input(make, msg, exc):
    cand, lens, logits, _, _ = _good()
    with pytest.raises(exc, match=msg):
        leanops.verify_greedy(*make(cand, lens, logits))


@pytest.mark.skipif(not _library.compiled_available(), reason="compiled library not built")
def test_raw_ops_check_indices():
    cand, lens, logits, q, u = _good()
    with pytest.raises(RuntimeError, match="outside the vocabulary"):
        torch.ops.leanops.verify_greedy(torch.full_like(cand, 9), torch.tensor([3, 3]), logits)
    with pytest.raises(RuntimeError, match=r"candidate_len\[1\] = 7"):
        torch.ops.leanops.verify_greedy(cand, torch.tensor([0, 7]), logits)
    with pytest.raises(RuntimeError, match="temperature must be > 0"):
        torch.ops.leanops.verify_sampling(cand, lens, q, logits, 0.0, u)
    with pytest.raises(RuntimeError, match="draft_len holds 9"):
        torch.ops.leanops.majority_vote(torch.zeros(1, 2, 3, dtype=torch.long), torch.tensor([[1, 9]]), torch.ones(2))


def test_sampling_and_vote_bad_input():
    cand, lens, logits, q, u = _good()
    for t in (0.0, -1.0, float("nan"), "hot"):
        with pytest.raises(ValueError, match="temperature must be"):
            leanops.verify_sampling(cand, lens, q, logits, t)
    with pytest.raises(ValueError, match="draft_probs must be"):
        leanops.verify_sampling(cand, lens, q[:, :2], logits)
    with pytest.raises(ValueError, match="uniforms must be"):
        leanops.verify_sampling(cand, lens, q, logits, uniforms=u[:, :2])
    drafts = torch.zeros(2, 3, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="drafts must hold K >= 1"):
        leanops.majority_vote(drafts[:, :0], torch.zeros(2, 0, dtype=torch.long), torch.ones(0))
    with pytest.raises(ValueError, match="weights must be"):
        leanops.majority_vote(drafts, torch.ones(2, 3, dtype=torch.long), torch.ones(4))
    with pytest.raises(ValueError, match="draft_len holds values outside"):
        leanops.majority_vote(drafts, torch.full((2, 3), 5), torch.ones(3))
    with pytest.raises(ValueError, match="offsets must start at 0"):
        leanops.verify_greedy_ragged(torch.zeros(3, dtype=torch.long), torch.tensor([1, 3]), torch.zeros(4, 5))
