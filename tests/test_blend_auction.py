"""leanops.blend allocation and VCG: hand-made values, brute-force optimality, IR, truthfulness, bad input."""
import itertools
import math

import pytest
import torch

from leanops.blend import allocate, count_slates, enumerate_slates, vcg, vcg_result


def cheap_click_model(m, seed, externality=0.6, boost=0.0):
    """Click probabilities with position decay and neighbour externalities: similar neighbours share
    attention (negative), and with ``boost`` a very attractive item above raises the next one (positive)."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.nn.functional.normalize(torch.randn(m, 3, generator=g), dim=1)
    attract = torch.rand(m, generator=g) * 0.6 + 0.1
    sim = (feats @ feats.T).clamp(min=0)

    def model(slates):
        n = slates.shape[1]
        base = attract[slates] * 0.85 ** torch.arange(n)
        crowd = torch.zeros_like(base)
        crowd[:, 1:] += sim[slates[:, 1:], slates[:, :-1]]
        crowd[:, :-1] += sim[slates[:, :-1], slates[:, 1:]]
        ctr = base / (1 + externality * crowd)
        if boost:
            ctr[:, 1:] = ctr[:, 1:] * (1 + boost * attract[slates[:, :-1]])
        return ctr.clamp(0, 1)

    return model


def random_instance(seed, n_ads=3, n_org=3):
    g = torch.Generator().manual_seed(1000 + seed)
    is_ad = torch.tensor([True] * n_ads + [False] * n_org)[torch.randperm(n_ads + n_org, generator=g)]
    bids = torch.where(is_ad, torch.rand(n_ads + n_org, generator=g) * 3, torch.zeros(n_ads + n_org))
    return bids.double(), is_ad


def brute_force(model, bids, is_ad, n_slots, max_ads, vb_ad, vb_org, keep, removed=None):
    """Best value over every ordered choice of n_slots candidates, one slate per click-model call."""
    best, best_slate = -math.inf, None
    for perm in itertools.permutations(range(len(bids)), n_slots):
        if removed is not None and removed in perm:
            continue
        if sum(bool(is_ad[c]) for c in perm) > max_ads:
            continue
        orgs = [c for c in perm if not is_ad[c]]
        if keep and orgs != sorted(orgs):
            continue
        ctr = model(torch.tensor([perm]))[0].double()
        v = sum(float((bids[c] + vb_ad) * ctr[s]) if is_ad[c] else vb_org * float(ctr[s]) for s, c in enumerate(perm))
        if v > best:
            best, best_slate = v, perm
    return best, best_slate


def test_hand_made_price_without_externality():
    ctr = torch.tensor([0.5, 0.4, 0.3], dtype=torch.float64)
    model = lambda s: ctr[s]  # noqa: E731
    bids, is_ad = torch.tensor([2.0, 1.0, 0.0]), torch.tensor([True, True, False])
    slate, price = vcg(model, bids, is_ad, n_slots=1, max_ads=1, vb_org=1.0)
    # values: ad0 2*0.5=1.0, ad1 0.4, organic 0.3 -> W*=1.0, W*_-0=0.4, price=(0.4-(1.0-1.0))/0.5=0.8
    assert slate.tolist() == [0] and price.tolist() == pytest.approx([0.8])
    _, value = allocate(model, bids, is_ad, 1, 1, vb_org=1.0)
    assert value == pytest.approx(1.0)


def test_hand_made_negative_price_and_floor():
    def model(slates):  # ad 0 triples the organic items' clicks on its page
        has_ad = (slates == 0).any(1, keepdim=True)
        return torch.where(slates == 0, 0.1, torch.where(has_ad, 0.6, 0.2)).double()

    bids, is_ad = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([True, False, False])
    r = vcg_result(model, bids, is_ad, n_slots=2, max_ads=1, vb_org=1.0)
    # W* = 1*0.1 + 0.6 = 0.7, W*_-0 = 0.2 + 0.2 = 0.4, price = (0.4 - (0.7 - 0.1)) / 0.1 = -2
    ad_slot = int((r.slate == 0).nonzero())
    assert r.value == pytest.approx(0.7) and r.price_per_click[ad_slot] == pytest.approx(-2.0)
    _, floored = vcg(model, bids, is_ad, 2, 1, vb_org=1.0, negative_prices="floor")
    assert floored[ad_slot] == 0.0


@pytest.mark.parametrize("keep", [True, False])
def test_enumeration_counts_and_feasibility(keep):
    is_ad = torch.tensor([True, False, True, False, False, True])
    slates = enumerate_slates(is_ad, 3, 2, keep)
    assert slates.shape[0] == count_slates(3, 3, 3, 2, keep) == len({tuple(s) for s in slates.tolist()})
    for s in slates.tolist():
        assert len(set(s)) == 3 and sum(bool(is_ad[c]) for c in s) <= 2
        if keep:
            orgs = [c for c in s if not is_ad[c]]
            assert orgs == sorted(orgs)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("keep", [True, False])
def test_allocation_optimal_vs_brute_force(seed, keep):
    bids, is_ad = random_instance(seed)
    model = cheap_click_model(6, seed, boost=0.5 * (seed % 2))
    vb_org = [0.0, 0.5, 2.0][seed % 3]
    want, _ = brute_force(model, bids, is_ad, 3, 2, 0.1, vb_org, keep)
    slate, value = allocate(model, bids, is_ad, 3, 2, vb_ad=0.1, vb_org=vb_org, keep_organic_order=keep,
                            method="exact")
    assert value == pytest.approx(want, rel=1e-9, abs=1e-12)
    # a beam wide enough to keep every prefix is exhaustive
    _, beam_value = allocate(model, bids, is_ad, 3, 2, vb_ad=0.1, vb_org=vb_org, keep_organic_order=keep,
                             method="beam", beam_width=1000)
    assert beam_value == pytest.approx(want, rel=1e-9, abs=1e-12)
    _, narrow = allocate(model, bids, is_ad, 3, 2, vb_ad=0.1, vb_org=vb_org, keep_organic_order=keep,
                         method="beam", beam_width=2)
    assert narrow <= want + 1e-12


@pytest.mark.parametrize("seed", range(6))
def test_vcg_matches_brute_force_and_is_individually_rational(seed):
    bids, is_ad = random_instance(seed)
    model = cheap_click_model(6, seed, boost=0.5 * (seed % 2))
    vb_org = 0.7
    r = vcg_result(model, bids, is_ad, 3, 2, vb_org=vb_org, method="exact")
    w_star, _ = brute_force(model, bids, is_ad, 3, 2, 0.0, vb_org, True)
    assert r.value == pytest.approx(w_star)
    for s, c in enumerate(r.slate.tolist()):
        if not is_ad[c]:
            assert r.price_per_click[s] == 0
            continue
        w_minus, _ = brute_force(model, bids, is_ad, 3, 2, 0.0, vb_org, True, removed=c)
        ctr = float(r.ctr[s])
        want = (w_minus - (w_star - float(bids[c]) * ctr)) / ctr
        assert float(r.price_per_click[s]) == pytest.approx(want, rel=1e-9, abs=1e-9)
        assert float(r.price_per_click[s]) <= float(bids[c]) + 1e-9  # individual rationality
    # the beam answer with batched re-solves agrees on these small instances (exhaustive width)
    rb = vcg_result(model, bids, is_ad, 3, 2, vb_org=vb_org, method="beam", beam_width=1000)
    assert torch.allclose(rb.price_per_click, r.price_per_click, atol=1e-9)


def utility(model, bids, is_ad, ad, true_value, vb_org, negative_prices="allow"):
    slate, price = vcg(model, bids, is_ad, 3, 2, vb_org=vb_org, method="exact", negative_prices=negative_prices)
    where = (slate == ad).nonzero()
    if where.numel() == 0:
        return 0.0
    s = int(where)
    ctr = float(model(slate[None])[0, s])
    return (true_value - float(price[s])) * ctr


@pytest.mark.parametrize("seed", range(5))
def test_truthful_over_bid_deviation_grid(seed):
    bids, is_ad = random_instance(seed)
    model = cheap_click_model(6, seed, boost=0.8 * (seed % 2))
    for ad in torch.nonzero(is_ad).flatten().tolist():
        v = float(bids[ad])
        truthful = utility(model, bids, is_ad, ad, v, 0.7)
        assert truthful >= -1e-12  # IR in utility terms
        for factor in (0.0, 0.3, 0.6, 0.9, 1.1, 1.5, 2.5, 5.0):
            lied = bids.clone()
            lied[ad] = v * factor
            assert utility(model, lied, is_ad, ad, v, 0.7) <= truthful + 1e-9, (ad, factor)


def test_method_auto_switches_to_beam():
    bids, is_ad = random_instance(0, n_ads=4, n_org=6)
    model = cheap_click_model(10, 0)
    exact = vcg_result(model, bids, is_ad, 4, 2, vb_org=0.5, method="auto")
    beam = vcg_result(model, bids, is_ad, 4, 2, vb_org=0.5, method="auto", exact_limit=10)
    assert exact.method == "exact" and beam.method == "beam"
    assert beam.value <= exact.value + 1e-12


@pytest.mark.parametrize("kwargs, match", [
    (dict(bids=[1.0, -0.5, 0.0]), "bids must be >= 0"),
    (dict(bids=[1.0, float("nan"), 0.0]), "bids must be finite"),
    (dict(bids=[1.0, 1.0]), "is_ad and bids must have the same length"),
    (dict(n_slots=4), "n_slots=4 cannot be filled"),
    (dict(n_slots=3, max_ads=0), "cannot be filled"),
    (dict(max_ads=-1), "max_ads must be >= 0"),
    (dict(n_slots=0), "n_slots must be >= 1"),
    (dict(n_slots=2.0), "n_slots must be an int"),
    (dict(vb_org=float("inf")), "vb_org must be a finite number"),
    (dict(method="greedy"), "method must be"),
    (dict(beam_width=0, method="beam"), "beam_width"),
])
def test_bad_input(kwargs, match):
    args = dict(click_model=lambda s: torch.full(s.shape, 0.5), bids=[1.0, 2.0, 0.0],
                is_ad=torch.tensor([True, True, False]), n_slots=2, max_ads=1)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        allocate(**args)


@pytest.mark.parametrize("bad_model, match", [
    (lambda s: torch.full((s.shape[0], s.shape[1] + 1), 0.5), "click_model returned shape"),
    (lambda s: torch.full(s.shape, 1.5), "outside \\[0, 1\\]"),
    (lambda s: torch.full(s.shape, -0.1), "outside \\[0, 1\\]"),
    (lambda s: torch.full(s.shape, float("nan")), "outside \\[0, 1\\]"),
    (lambda s: s.tolist(), "click_model must return a tensor"),
])
@pytest.mark.parametrize("method", ["exact", "beam"])
def test_bad_click_model(bad_model, match, method):
    with pytest.raises((ValueError, TypeError), match=match):
        vcg(bad_model, [1.0, 2.0, 0.0, 0.0], torch.tensor([True, True, False, False]), 2, 1, method=method)


def test_bad_is_ad_and_negative_prices_option():
    with pytest.raises(ValueError, match="is_ad must be a 1-D bool"):
        allocate(lambda s: torch.full(s.shape, 0.5), [1.0, 0.0], torch.tensor([1, 0]), 1, 1)
    with pytest.raises(ValueError, match="negative_prices"):
        vcg(lambda s: torch.full(s.shape, 0.5), [1.0, 0.0], torch.tensor([True, False]), 1, 1, negative_prices="x")


def test_score_cache_scores_each_distinct_slate_once():
    from leanops.blend.slates import ScoreCache, values_of

    seen = []
    base = cheap_click_model(6, 0)

    def counting(slates):
        seen.append(slates.shape[0])
        return base(slates)

    cache = ScoreCache(6, 3)
    slates = torch.tensor([[0, 1, 2], [3, 4, 5], [0, 1, 2]])
    w = torch.rand(6, dtype=torch.float64)
    v1, c1 = values_of(counting, slates, w, cache=cache)
    v2, c2 = values_of(counting, torch.tensor([[3, 4, 5], [5, 4, 3]]), w, cache=cache)
    assert seen == [2, 1]  # duplicates and already-scored slates are not sent again
    want_v, want_c = values_of(base, torch.tensor([[0, 1, 2], [3, 4, 5], [0, 1, 2], [3, 4, 5], [5, 4, 3]]), w)
    assert torch.allclose(torch.cat([c1, c2]), want_c) and torch.allclose(torch.cat([v1, v2]), want_v)
    # VCG answers do not depend on sharing scores or batching the re-solves
    bids, is_ad = random_instance(3, n_ads=4, n_org=5)
    model = cheap_click_model(9, 3)
    a = vcg_result(model, bids, is_ad, 4, 2, vb_org=0.5, method="beam", beam_width=3)
    b = vcg_result(model, bids, is_ad, 4, 2, vb_org=0.5, method="beam", beam_width=3, batched_resolves=False,
                   share_scores=False, chunk_size=9)
    assert torch.equal(a.slate, b.slate) and torch.allclose(a.price_per_click, b.price_per_click, atol=1e-12)
