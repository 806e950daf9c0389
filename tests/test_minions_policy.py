"""Minions' decisions in isolation (``leanops.minions.policy``), without models: the speculation length
maximises expected tokens per second for given costs and acceptance, the verify-cost line, tempered vote weights
that do not collapse, and pipeline="auto"'s choice."""
import random

import pytest
import torch

from leanops.minions.policy import (LengthPolicy, OverlapPolicy, VerifyCostLine, VoteWeights, acceptance_estimate,
                                    expected_tokens)


def _line_policy(c0, c1, min_gamma=1, max_gamma=8, gamma=4, hysteresis=1.0, recheck_every=16):
    """A length policy whose verify line has been fed exact passes: seconds = c0 + c1 * tokens."""
    policy = LengthPolicy(min_gamma, max_gamma, gamma, hysteresis, recheck_every)
    for _ in range(3):
        for width in range(1, 10):
            policy.verify.record(width, c0 + c1 * width)
    return policy


def _oracle_rate(g, alpha, c0, c1, draft, hidden):
    """Expected tokens of a round (the LLM's token plus each draft token up to the first rejection, summed
    term by term) over its seconds (a 1 + g token verify pass + the drafting not hidden)."""
    tokens = sum(alpha ** i for i in range(g + 1))
    return tokens / (c0 + c1 * (g + 1) + (1 - hidden) * g * draft)


@pytest.mark.parametrize("alpha", [0.05, 0.3, 0.6, 0.85, 0.97])
@pytest.mark.parametrize("c0, c1, draft", [(5e-3, 1e-4, 2e-4), (5e-3, 2e-3, 5e-4), (1e-3, 1e-4, 3e-3),
                                           (2e-2, 1e-3, 1e-4)])
@pytest.mark.parametrize("hidden", [0.0, 0.5])
@pytest.mark.parametrize("min_gamma", [0, 1])
def test_length_maximises_expected_tokens_per_second(alpha, c0, c1, draft, hidden, min_gamma):
    policy = _line_policy(c0, c1, min_gamma=min_gamma)
    got = policy.choose(alpha, draft, hidden, round_index=1)  # not a recheck round
    rates = {g: _oracle_rate(g, alpha, c0, c1, draft, hidden) for g in range(min_gamma, 9)}
    best = max(rates, key=rates.get)
    assert got == best, (rates, got)
    assert policy.gamma == 4  # choose() decides, it does not store


def test_length_extremes():
    cheap = _line_policy(5e-3, 1e-5)
    assert cheap.choose(0.97, 1e-5, 0.0, 1) == 8  # near-certain acceptance, free drafting: the longest draft
    assert cheap.choose(0.02, 1e-3, 0.0, 1) == 1  # hopeless drafts: the shortest allowed
    plain = _line_policy(5e-3, 1e-5, min_gamma=0)
    assert plain.choose(0.02, 1e-3, 0.0, 1) == 0  # speculation does not pay: a plain LLM step


def test_plain_steps_recheck_speculation_every_recheck_every_rounds():
    policy = _line_policy(5e-3, 1e-5, min_gamma=0, recheck_every=8)
    choices = [policy.choose(0.02, 1e-3, 0.0, r) for r in range(1, 33)]
    assert [r for r, g in zip(range(1, 33), choices) if g > 0] == [8, 16, 24, 32]
    assert all(g == 1 for g in choices if g > 0)  # the best speculative length, here the shortest


def test_length_hysteresis_keeps_the_current_length_unless_clearly_better():
    alpha, c0, c1, draft = 0.6, 5e-3, 2e-3, 5e-4
    rates = {g: _oracle_rate(g, alpha, c0, c1, draft, 0.0) for g in range(1, 9)}
    best = max(rates, key=rates.get)
    runner_up = max((g for g in rates if g != best), key=rates.get)
    ratio = rates[best] / rates[runner_up]
    assert ratio > 1
    sticky = _line_policy(c0, c1, gamma=runner_up, hysteresis=ratio * 1.01)
    assert sticky.choose(alpha, draft, 0.0, 1) == runner_up  # better, but not by the margin
    loose = _line_policy(c0, c1, gamma=runner_up, hysteresis=ratio * 0.99)
    assert loose.choose(alpha, draft, 0.0, 1) == best


def test_expected_tokens_and_acceptance_estimate():
    for alpha in (0.01, 0.5, 0.9):
        for g in range(9):
            assert expected_tokens(alpha, g) == pytest.approx(sum(alpha ** i for i in range(g + 1)))
    assert acceptance_estimate(0, 0) == 0.5  # the Beta(1, 1) prior alone
    assert acceptance_estimate(9, 0) == pytest.approx(10 / 11)
    assert acceptance_estimate(3, 5) == pytest.approx(4 / 10)
    assert acceptance_estimate(10 ** 6, 0) == 0.99 and acceptance_estimate(0, 10 ** 6) == 0.01  # clamped


def test_verify_cost_line():
    line = VerifyCostLine()
    for width in (1, 3, 7, 2, 9):
        line.record(width, 0.004 + 0.0005 * width)
    assert line.predict(5) == pytest.approx(0.0065)
    assert line.predict(20) == pytest.approx(0.014)
    flat = VerifyCostLine()
    for s in (0.01, 0.02):
        flat.record(3, s)  # no spread in width yet: a constant, the decayed mean
    assert flat.predict(1) == flat.predict(9) == pytest.approx((0.97 * 0.01 + 0.02) / 1.97)
    falling = VerifyCostLine()
    for width in range(1, 6):
        falling.record(width, 0.01 - 0.001 * width)  # noise can make it fall: never a negative slope
    assert falling.predict(1) == falling.predict(50)
    tilted = VerifyCostLine()
    tilted.record(8, 0.05)  # a slow, wide first pass (prefill and warm-up) ...
    for _ in range(20):
        tilted.record(2, 0.002)  # ... then narrow fast ones: the plain line would go below zero at width 1
    assert 0 < tilted.predict(1) < tilted.predict(2)
    assert tilted.predict(1) == pytest.approx(tilted.predict(2) / 2)  # through the origin


def test_verify_cost_line_follows_recent_passes():
    line = VerifyCostLine()
    for width in range(1, 10):
        line.record(width, 0.1)  # an old regime
    for _ in range(40):
        for width in range(1, 10):
            line.record(width, 0.001 * width)
    assert line.predict(5) == pytest.approx(0.005, rel=0.02)


def _t(*v):
    return torch.tensor(v, dtype=torch.float64)


def test_vote_weights_measure_each_drafters_acceptance():
    vote = VoteWeights(3, decay=1.0)
    vote.update(_t(8, 2, 0), _t(1, 2, 0), [0, 1])  # SSM 2 did not draft: its counts stay at the prior
    assert vote.alpha(0) == pytest.approx(acceptance_estimate(8, 1))
    assert vote.alpha(1) == pytest.approx(acceptance_estimate(2, 2))
    assert vote.alpha(2) == 0.5
    vote.update(_t(0, 0, 0), _t(0, 0, 0), [])  # nobody drafted: nothing moves
    assert vote.alpha(0) == pytest.approx(acceptance_estimate(8, 1))


def test_vote_weights_are_tempered_ratios_to_the_best_and_floored():
    vote = VoteWeights(3, temperature=2.0, floor=0.3, decay=1.0)
    vote.update(_t(98, 48, 0), _t(0, 48, 98), [0, 1, 2])  # alphas 0.99, 0.5, 0.01
    a = [vote.alpha(i) for i in range(3)]
    want = [1.0, (a[1] / a[0]) ** 0.5, 0.3]  # the worst one sits on the floor, not at zero
    assert vote.values.tolist() == pytest.approx(want)
    assert VoteWeights(3, initial=[1.0, 2.0, 0.5]).values.tolist() == [1.0, 2.0, 0.5]  # equal acceptance


def test_vote_weights_do_not_collapse_onto_one_drafter():
    # the old multiplicative updates ran to [0.32, 0.11, 3.17] under the same stream; tempered ratios stay
    # within [floor, 1] and two agreeing drafters together outweigh the best one alone
    rng = random.Random(0)
    vote = VoteWeights(3)
    p = [0.8, 0.6, 0.55]
    for _ in range(500):
        agree = [0.0] * 3
        rej = [0.0] * 3
        for i in range(3):
            for _ in range(4):
                if rng.random() < p[i]:
                    agree[i] += 1
                else:
                    rej[i] += 1
                    break
        vote.update(_t(*agree), _t(*rej), [0, 1, 2])
        w = vote.values
        assert bool(((w >= 0.2 - 1e-12) & (w <= 1.0 + 1e-12)).all())
    assert w[0] == 1.0 and w[1] + w[2] > w[0]


def test_vote_weights_decay_follows_a_drafter_that_changes():
    vote = VoteWeights(2, decay=0.9)
    for _ in range(50):
        vote.update(_t(4, 0), _t(0, 1), [0, 1])
    assert vote.alpha(0) > 0.9 and vote.alpha(1) < 0.1
    for _ in range(50):
        vote.update(_t(0, 4), _t(1, 0), [0, 1])  # they swap
    assert vote.alpha(0) < 0.1 and vote.alpha(1) > 0.9


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0}, {"temperature": -1.0}, {"floor": 0.0}, {"floor": 1.5},
                                    {"decay": 0.0}, {"decay": 1.1}])
def test_vote_weights_reject_bad_settings(kwargs):
    with pytest.raises(ValueError, match="temperature|floor|decay"):
        VoteWeights(2, **kwargs)


def _overlap_run(policy, cost_on, cost_off, rounds, width=5):
    choices = []
    for _ in range(rounds):
        on = policy.choose()
        choices.append(on)
        policy.record(on, (cost_on if on else cost_off) * width, width)
    return choices


def test_overlap_tries_both_ways_then_takes_the_cheaper_and_rechecks_rarely():
    policy = OverlapPolicy(hysteresis=1.05)
    choices = _overlap_run(policy, cost_on=1.0, cost_off=2.0, rounds=300)
    assert choices[:12] == [False, True] * 6  # both ways measured in turn first
    after = choices[12:]
    rechecks = [i + 13 for i, on in enumerate(after) if not on]  # the slower way, once in a while
    assert len(rechecks) <= 4 and sum(after) > 0.98 * len(after) - 4
    assert all(b - a >= 32 for a, b in zip(rechecks, rechecks[1:]))  # gaps of at least 32, doubling
    assert [b - a for a, b in zip(rechecks, rechecks[1:])] == sorted(b - a for a, b in zip(rechecks, rechecks[1:]))
    slow = _overlap_run(OverlapPolicy(), cost_on=2.0, cost_off=1.0, rounds=200)
    assert sum(slow[12:]) <= 3  # overlapping measured slower: not taken but for rechecks


def test_overlap_hysteresis_does_not_flip_on_a_small_difference():
    policy = OverlapPolicy(hysteresis=1.2)
    choices = _overlap_run(policy, cost_on=1.0, cost_off=1.1, rounds=100)  # 10% better: below the margin
    assert sum(choices[12:]) <= 3  # stays with not overlapping (the first choice), rechecks aside
    clear = _overlap_run(OverlapPolicy(hysteresis=1.2), cost_on=1.0, cost_off=1.5, rounds=100)
    assert sum(clear[12:]) >= len(clear[12:]) - 3


def test_agreement_counts_as_the_same_per_token_acceptance():
    w = VoteWeights(2, decay=1.0)
    w.record_agreement(1, 30, 10)  # scored teacher-forced on 40 kept tokens
    assert w.alpha(1) == pytest.approx(acceptance_estimate(30, 10))
    assert w.alpha(0) == pytest.approx(acceptance_estimate(0, 0))  # the other SSM untouched


def test_agreement_with_nothing_scored_leaves_the_estimate_alone():
    w = VoteWeights(2, decay=0.5)
    w.record_agreement(0, 8, 2)
    before = w.alpha(0)
    w.record_agreement(0, 0, 0)  # a catch-up with no scorable token: no evidence, so no decay either
    assert w.alpha(0) == before
    w.record_agreement(0, 0, 1)
    assert w.alpha(0) < before
