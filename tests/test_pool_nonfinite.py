"""jagged_attention_pool's NaN/inf contract (docs/DESIGN.md, pool), on the reference and every backend:
a -inf logit masks its entry (its value is never read), a row of only masked entries is empty, a NaN or
+inf logit makes its (row, head) NaN, a non-finite value reaches out through its weight."""
import pytest
import torch
from conftest import BACKENDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pool_ops import make_case

import leanops
from leanops.reference import pool as ref

NAN, INF = float("nan"), float("inf")
IDS = [f"{b}-{d}" for b, d in BACKENDS]
DIFF = ("q", "k", "v", "bias", "freq_c", "prior_logit", "prior_value")


def _run(backend, args):
    return leanops.jagged_attention_pool(*args.values(), backend=backend)


def _grads(backend, args, seed=1):
    """Forward and the gradients of a random linear loss in out and lse (lse's non-finite entries left out)."""
    leaves = {k: args[k].detach().clone().requires_grad_() for k in DIFF if args[k] is not None}
    out, lse = _run(backend, {**args, **leaves})
    g = torch.Generator().manual_seed(seed)
    w_out = torch.randn(out.shape, generator=g, dtype=out.dtype)
    w_lse = torch.randn(lse.shape, generator=g, dtype=lse.dtype)
    loss = (out * w_out).sum() + torch.where(torch.isfinite(lse), lse * w_lse, torch.zeros_like(lse)).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return out.detach(), lse.detach(), dict(zip(leaves, grads))


def _same(got, want, tol=1e-9, what=""):
    """Same non-finite positions (NaN where NaN, same infinities), close elsewhere."""
    torch.testing.assert_close(got, want.to(got.dtype), rtol=tol, atol=tol, equal_nan=True, msg=what)


def _same_finiteness(got, want, tol=1e-9, what=""):
    """Gradients: non-finite in the same places (NaN and inf may differ where 0 * inf arises), close elsewhere."""
    fin = torch.isfinite(want)
    assert torch.equal(torch.isfinite(got), fin), f"{what}: non-finite at {(torch.isfinite(got) != fin).nonzero()}"
    torch.testing.assert_close(got[fin], want[fin].to(got.dtype), rtol=tol, atol=tol, msg=what)


def _base(seed=0, lengths=(3, 0, 4, 2), prior=True):
    return make_case(list(lengths), 2, 5, 3, torch.float64, "cpu", seed, True, True, prior)


# ----------------------------------------------------------------------------- the contract, stated
@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
@pytest.mark.parametrize("where", ["q", "k", "bias", "freq_c", "bias+inf", "prior_logit", "prior_logit+inf"])
def test_nan_or_plus_inf_logit_makes_its_row_nan(backend, where):
    name, _ = backend
    a = _base()
    row, head = 2, 1  # row 2 holds behaviours 3..6
    if where == "q":
        a["q"][row, head, 0] = NAN
    elif where == "k":
        a["k"][4, head, 2] = NAN
    elif where == "bias":
        a["bias"][5, head] = NAN
    elif where == "freq_c":
        a["freq_c"][3, head] = NAN
    elif where == "bias+inf":
        a["bias"][5, head] = INF
    elif where == "prior_logit":
        a["prior_logit"][row, head] = NAN
    else:
        a["prior_logit"][row, head] = INF
    out, lse = _run(name, a)
    assert torch.isnan(out[row, head]).all() and torch.isnan(lse[row, head])
    clean_out, clean_lse = _run(name, _base())
    keep = torch.ones(out.shape[:2], dtype=torch.bool)
    keep[row, head] = False
    torch.testing.assert_close(out[keep], clean_out[keep])
    torch.testing.assert_close(lse[keep], clean_lse[keep])


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
@pytest.mark.parametrize("how", ["bias", "freq_c"])
def test_minus_inf_logit_masks_the_entry_and_its_value_is_not_read(backend, how):
    """bias = -inf (or freq_c = +inf: s - softplus(+inf) = -inf) removes the entry; NaN/inf there is ignored."""
    name, _ = backend
    a = _base(prior=False)
    drop = [1, 4, 5]  # row 0 keeps 0, 2; row 2 keeps 3, 6
    for t in drop:
        if how == "bias":
            a["bias"][t] = -INF
        else:
            a["freq_c"][t] = INF
    a["v"][1] = NAN
    a["v"][4] = INF
    a["v"][5, 0, 1] = -INF
    out, lse, grads = _grads(name, a)
    keep = [t for t in range(a["k"].shape[0]) if t not in drop]
    lengths = [2, 0, 2, 2]
    sub = {**a, "offsets": leanops.lengths_to_offsets(torch.tensor(lengths))}
    for key in ("k", "v", "bias", "freq_c"):
        sub[key] = a[key][keep]
    want_out, want_lse, want_grads = _grads("reference", sub)
    _same(out, want_out)
    _same(lse, want_lse)
    for key in ("q", "prior_value"):
        if key in grads:
            _same(grads[key], want_grads[key], what=key)
    for key in ("k", "v", "bias", "freq_c"):
        _same(grads[key][keep], want_grads[key], what=key)
        assert (grads[key][drop] == 0).all(), f"a masked entry has zero d{key}"


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
@pytest.mark.parametrize("prior", ["none", "given", "masked"])
def test_all_masked_row_is_empty(backend, prior):
    name, _ = backend
    a = _base(prior=prior != "none")
    a["bias"][3:7] = -INF  # every behaviour of row 2
    a["v"][3:7] = NAN
    if prior == "masked":
        a["prior_logit"][2] = -INF
        a["prior_value"][2] = NAN
    out, lse, grads = _grads(name, a)
    if prior == "given":
        torch.testing.assert_close(out[2], a["prior_value"][2])
        torch.testing.assert_close(lse[2], a["prior_logit"][2])
    else:
        assert (out[2] == 0).all() and (lse[2] == -INF).all()
    assert (grads["q"][2] == 0).all() and (grads["k"][3:7] == 0).all() and (grads["v"][3:7] == 0).all()
    assert (grads["bias"][3:7] == 0).all() and (grads["freq_c"][3:7] == 0).all()
    if prior == "masked":
        assert (grads["prior_value"][2] == 0).all() and (grads["prior_logit"][2] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
def test_masked_prior_is_ignored(backend):
    name, _ = backend
    a = _base()
    a["prior_logit"][:, 0] = -INF
    a["prior_value"][:, 0] = NAN
    out, lse = _run(name, a)
    no_prior = _run(name, {**a, "prior_logit": None, "prior_value": None})
    torch.testing.assert_close(out[:, 0], no_prior[0][:, 0], equal_nan=False)
    torch.testing.assert_close(lse[:, 0], no_prior[1][:, 0])
    assert torch.isfinite(out[:, 1]).all()


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
def test_freq_c_minus_inf_leaves_the_logit(backend):
    name, _ = backend
    a = _base()
    a["freq_c"][:] = -INF  # s - softplus(-inf) = s
    got = _run(name, a)
    want = _run(name, {**a, "freq_c": None})
    _same(got[0], want[0])
    _same(got[1], want[1])


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_non_finite_value_reaches_out_through_its_weight(backend, bad):
    name, _ = backend
    a = _base()
    a["v"][4, 1, 2] = bad  # row 2, head 1, channel 2
    out, lse, grads = _grads(name, a)
    want_out, want_lse, want_grads = _grads("reference", a)
    assert torch.isfinite(lse).all()
    assert not torch.isfinite(out[2, 1, 2])
    fin = torch.ones_like(out, dtype=torch.bool)
    fin[2, 1, 2] = False
    assert torch.isfinite(out[fin]).all()
    _same(out, want_out)
    for key, g in grads.items():
        _same_finiteness(g, want_grads[key], what=key)


@pytest.mark.parametrize("backend", BACKENDS[1:], ids=IDS[1:])
def test_plus_inf_query_with_frequency_gate_matches_reference(backend):
    """Found by hypothesis: a +inf query makes a -inf logit; Triton's lanes past the row end computed
    0 * inf = NaN in the frequency-gate backward and spread it into dq."""
    a = {"q": torch.tensor([[[INF]]], dtype=torch.float64), "k": torch.tensor([[[-0.2934]]], dtype=torch.float64),
         "v": torch.tensor([[[-2.1788]]], dtype=torch.float64), "offsets": torch.tensor([0, 1]), "scale": 1.0,
         "bias": None, "freq_c": torch.tensor([[0.5684]], dtype=torch.float64), "prior_logit": None,
         "prior_value": None}
    out, lse, grads = _grads(backend[0], a)
    want_out, want_lse, want_grads = _grads("reference", a)
    _same(out, want_out, what="out")
    _same(lse, want_lse, what="lse")
    for key, g in grads.items():
        _same_finiteness(g, want_grads[key], what=key)
    assert torch.isfinite(grads["v"]).all()  # dv = p * dout


# ----------------------------------------------------------------------------- fuzz: every backend = reference
SPECIALS = st.sampled_from([NAN, INF, -INF])


@st.composite
def sprinkled_case(draw):
    lengths = draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
    a = make_case(lengths, draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 3)), torch.float64,
                  "cpu", draw(st.integers(0, 2**31 - 1)), draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from([k for k in DIFF if a[k] is not None and a[k].numel()]))
        flat = a[key].view(-1)
        flat[draw(st.integers(0, flat.numel() - 1))] = draw(SPECIALS)
    return a


@pytest.mark.parametrize("backend", BACKENDS[1:], ids=IDS[1:])
@given(a=sprinkled_case())
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_non_finite_inputs_match_reference(backend, a):
    name, _ = backend
    out, lse, grads = _grads(name, a)
    want_out, want_lse, want_grads = _grads("reference", a)
    _same(out, want_out, what="out")
    _same(lse, want_lse, what="lse")
    for key, g in grads.items():
        _same_finiteness(g, want_grads[key], what=key)
