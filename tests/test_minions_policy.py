"""Minions' decisions in isolation (``leanops.minions.policy``), without models: the speculation length
maximises expected tokens per second for given costs and acceptance, the verify-cost line, vote weights
within bounds, benching, and pipeline="auto"'s choice."""
import random

import pytest
import torch

from leanops.minions.policy import (LengthPolicy, OverlapPolicy, VerifyCostLine, VoteWeights, acceptance_estimate,
                                    expected_tokens)
from leanops.minions.stats import MinionsStats


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


def test_length_update_reads_the_run_stats():
    policy = _line_policy(5e-3, 1e-3)
    stats = MinionsStats(cand_accepted=30, cand_rejections=10, draft_seconds=0.02, chosen_lengths=[4] * 10,
                         pipelined_drafts=5, rounds=10)
    want = policy.choose(acceptance_estimate(30, 10), 0.02 / 40, 0.5, 3)
    assert policy.update(stats, 3) == want == policy.gamma


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


def test_verify_cost_line_follows_recent_passes():
    line = VerifyCostLine()
    for width in range(1, 10):
        line.record(width, 0.1)  # an old regime
    for _ in range(40):
        for width in range(1, 10):
            line.record(width, 0.001 * width)
    assert line.predict(5) == pytest.approx(0.005, rel=0.02)


def test_vote_weights_stay_within_bounds_and_follow_acceptance():
    rng = random.Random(0)
    vote = VoteWeights(4, lr=5.0, bounds=(0.2, 3.0))
    for _ in range(500):
        scored = sorted(rng.sample(range(4), rng.randint(1, 4)))
        drafted = torch.tensor([float(rng.randint(1, 8)) if i in scored else 0.0 for i in range(4)], dtype=torch.float64)
        agree = torch.tensor([float(rng.randint(0, int(d))) for d in drafted], dtype=torch.float64)
        vote.update(agree, drafted, scored)
        assert bool(((vote.values >= 0.2) & (vote.values <= 3.0)).all())
        assert 0 <= vote.acceptance_ema <= 1
    steady = VoteWeights(3, lr=0.5)
    for _ in range(10):
        steady.update(torch.tensor([4.0, 1.0, 2.0], dtype=torch.float64), torch.full((3,), 4.0, dtype=torch.float64),
                      [0, 1, 2])
    w = steady.values
    assert w[0] > w[2] > w[1] and w[0] > 1 > w[1]  # ordered by acceptance
    assert float(w.prod()) == pytest.approx(1.0)  # relative steps: the product is kept inside the bounds


def test_vote_weights_equal_acceptance_changes_nothing():
    vote = VoteWeights(3, initial=[1.0, 2.0, 0.5])
    vote.update(torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64), torch.tensor([4.0, 4.0, 4.0], dtype=torch.float64),
                [0, 1, 2])
    assert vote.values.tolist() == [1.0, 2.0, 0.5]


def test_lone_drafter_moves_against_the_running_mean():
    vote = VoteWeights(2, lr=1.0)
    vote.update(torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([4.0, 0.0], dtype=torch.float64), [0])
    assert vote.values[0] == pytest.approx(torch.exp(torch.tensor(0.25 - 0.5, dtype=torch.float64)))  # 0.25 < 0.5
    assert vote.values[1] == 1.0  # did not draft: untouched
    assert vote.acceptance_ema == pytest.approx(0.9 * 0.5 + 0.1 * 0.25)
    vote.update(torch.tensor([0.0, 4.0], dtype=torch.float64), torch.tensor([0.0, 4.0], dtype=torch.float64), [1])
    assert vote.values[1] > 1.0  # all kept: above the running mean


def test_benching():
    vote = VoteWeights(3, initial=[1.0, 0.4, 0.6], bench_ratio=0.5, recheck_every=4)
    assert vote.drafters(1, do_sample=False) == [0, 2]  # 0.4 < 0.5 * 1.0: benched
    assert vote.drafters(4, do_sample=False) == [0, 1, 2]  # recheck round: everyone drafts and is re-scored
    assert vote.drafters(8, do_sample=False) == [0, 1, 2]
    assert vote.drafters(1, do_sample=True) == [0] == vote.drafters(4, do_sample=True)  # sampling: the heaviest
    assert VoteWeights(3, initial=[1.0, 0.4, 0.6], bench_ratio=0.0).drafters(1, False) == [0, 1, 2]  # never bench
    assert VoteWeights(2, initial=[0.3, 0.7]).drafters(1, True) == [1]


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
