"""The benchmark anchors take the specification's decisions: the eager float32 verify functions in
``leanops.bench.verify`` against ``leanops.reference.verify`` (float64) for the same uniforms, and the
timing helper's statistics on known samples."""
import math

import pytest
import torch

from leanops.bench import timing
from leanops.bench.verify import eager_verify_greedy, eager_verify_sampling
from leanops.reference import verify as ref


def _sampling_inputs(b, s, v, seed, agree=True, short=True):
    g = torch.Generator().manual_seed(seed)
    cand = torch.randint(0, v, (b, s), generator=g)
    logits = 2.0 * torch.randn(b, s + 1, v, generator=g)
    q = torch.softmax(2.0 * torch.randn(b, s, v, generator=g), -1)
    if agree:  # a target that likes the draft's tokens: long accepted prefixes, bonus draws
        logits[:, :s].scatter_add_(2, cand[..., None], torch.full((b, s, 1), 4.0))
    lens = torch.randint(0, s + 1, (b,), generator=g) if short else torch.full((b,), s)
    u = torch.rand(b, s + 1, generator=g)
    return cand, lens, q, logits, u


def _near_tie_rows(cand, lens, q, logits, temperature, u, accepted, tol=2e-6):
    """Rows whose decisions float32 rounding could flip: an accept test u*q vs p within tol (relative) at a
    position the row reached, or the inverse-CDF threshold within tol of a bucket edge."""
    b, s = cand.shape
    p = torch.softmax(logits.double() / temperature, -1)
    p_x = p[:, :s].gather(2, cand[..., None]).squeeze(-1)
    q_x = q.double().gather(2, cand[..., None]).squeeze(-1)
    reached = torch.arange(s)[None, :] <= torch.minimum(accepted, lens - 1)[:, None]
    close = ((u[:, :s].double() * q_x - p_x).abs() <= tol * p_x.clamp_min(1e-300)) & reached
    near = close.any(1)
    rows = torch.arange(b)
    p_at = p[rows, accepted]
    rejected = (accepted < lens)[:, None]
    dist = torch.where(rejected, (p_at - q.double()[rows, accepted.clamp_max(s - 1)]).clamp_min(0), p_at)
    dist = torch.where(dist.sum(-1, keepdim=True) > 0, dist, p_at)
    cdf = dist.cumsum(-1) / dist.sum(-1, keepdim=True)
    gap = (cdf - u[:, s, None].double()).abs().min(-1).values
    return near | (gap <= tol)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("v", [50, 1000])
def test_eager_sampling_anchor_takes_the_reference_decisions(v, temperature):
    cand, lens, q, logits, u = _sampling_inputs(4000, 5, v, seed=v)
    want_acc, want_next = ref.verify_sampling(cand, lens, q, logits, temperature, u)
    got_acc, got_next = eager_verify_sampling(cand, lens, q, logits, temperature, u)
    same = (got_acc == want_acc) & (got_next == want_next)
    near = _near_tie_rows(cand, lens, q, logits, temperature, u, want_acc)
    assert bool(same[~near].all()), f"{int((~same & ~near).sum())} rows differ without a near tie"
    assert same.float().mean() >= 0.99
    # the cases are all exercised: rejections, full accepts (bonus draws) and empty drafts
    assert bool((want_acc < lens).any()) and bool((want_acc == lens).any()) and bool((lens == 0).any())


def test_eager_sampling_anchor_degenerate_rows():
    """p == q at the rejection leaves an all-zero residual: both draw from p; S = 0 draws the bonus."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 3, 20, generator=g)
    q = torch.softmax(logits[:, :2], -1)
    cand = torch.randint(0, 20, (3, 2), generator=g)
    u = torch.tensor([[0.999, 0.5, 0.3], [0.2, 0.999, 0.6], [0.1, 0.2, 0.9]])
    lens = torch.tensor([2, 2, 1])
    for args in [(cand, lens, q, logits, 1.0, u),
                 (cand[:, :0], lens * 0, q[:, :0], logits[:, :1], 1.0, u[:, :1])]:
        want = ref.verify_sampling(*args)
        got = eager_verify_sampling(*args)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("v", [7, 1000])
def test_eager_greedy_anchor_equals_reference(v):
    g = torch.Generator().manual_seed(v)
    b, s = 500, 6
    logits = torch.randn(b, s + 1, v, generator=g)
    cand = logits[:, :s].argmax(-1)
    flip = torch.rand(b, s, generator=g) < 0.2  # mismatches at random positions
    cand = torch.where(flip, torch.randint(0, v, (b, s), generator=g), cand)
    lens = torch.randint(0, s + 1, (b,), generator=g)
    logits[:5, :, :3] = 5.0  # exact ties: the first maximum wins in both
    want = ref.verify_greedy(cand, lens, logits)
    got = eager_verify_greedy(cand, lens, logits)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert eager_verify_greedy.__module__ == "leanops.bench.verify"


def test_timing_statistics_and_paired_ratio():
    t = timing.Timing([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (t.median, t.p25, t.p75, t.min, t.max, t.n) == (3.0, 2.0, 4.0, 1.0, 5.0, 5)
    anchor = timing.Timing([2.0, 4.0, 6.0, 8.0, 10.0])
    fast = timing.Timing([1.0, 1.0, 2.0, 4.0, 4.0])
    r = timing.ratio(anchor, fast, "a")
    assert r.value == pytest.approx(6.0 / 2.0)
    pairs = sorted([2.0, 4.0, 3.0, 2.0, 2.5])  # anchor_i / fast_i
    assert (r.p25, r.p75) == (pairs[1], pairs[3]) and r.anchor == "a" and r.n == 5
    assert r.ci95 == (2.0, 4.0)  # n=5: the order-statistic interval spans the extremes
    assert str(r) == "3.00x (2.00-3.00)"
    with pytest.raises(ValueError, match="same number of repeats"):
        timing.ratio(anchor, timing.Timing([1.0]), "a")


def test_time_providers_interleaves_with_each_first_and_varied_neighbours():
    order = []
    fns = {name: (lambda name=name: order.append(name)) for name in "abcd"}
    res = timing.time_providers(fns, repeats=12, warmup=1)
    assert order[:4] == ["a", "b", "c", "d"]  # warm-up
    repeats = [order[4 + 4 * i: 8 + 4 * i] for i in range(12)]
    assert all(sorted(r) == list("abcd") for r in repeats)  # every provider once per repeat
    assert [r[0] for r in repeats] == list("abcd") * 3  # each first equally often
    before_b = {r[r.index("b") - 1] for r in repeats if r[0] != "b"}
    assert before_b == {"a", "c", "d"}  # b does not always run right after the same provider
    again = []
    fns2 = {name: (lambda name=name: again.append(name)) for name in "abcd"}
    timing.time_providers(fns2, repeats=12, warmup=1)
    assert again == order  # the order is fixed by the repeat index, not drawn anew each run
    assert all(r.n == 12 and all(x >= 0 for x in r.samples) for r in res.values())
    with pytest.raises(ValueError, match="repeats"):
        timing.time_providers(fns, repeats=0)


def test_time_until_stops_at_the_cap():
    calls = {"a": 0, "b": 0}

    def f(name):
        calls[name] += 1
        return sum(range(1000 if name == "a" or calls[name] % 2 else 50000))  # b alternates: wide spread

    res = timing.time_until({"a": lambda: f("a"), "b": lambda: f("b")}, [("a", "b")], target_rel_spread=1e-9,
                            min_repeats=4, max_repeats=9, step=2)
    assert res["a"].n == res["b"].n == 9


def test_median_ci95_contains_the_median():
    xs = sorted(float(i) for i in range(40))
    lo, hi = timing._median_ci95(xs)
    assert lo < 19.5 < hi and not math.isnan(lo)


def test_error_bars_never_negative_when_the_centre_lies_outside_the_spread():
    # ratio of medians can fall outside the p25-p75 of the paired ratios; matplotlib rejects negative yerr
    lo, hi = timing.error_bars([1.0, 2.0, 3.0], [0.5, 2.2, 2.0], [1.5, 2.5, 2.9])
    assert lo == [0.5, 0.0, 1.0]
    assert hi == [0.5, 0.5, 0.0]
