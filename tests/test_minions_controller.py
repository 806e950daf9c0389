"""The cost-aware controller (``leanops.minions.controller``) on given measurements, without models: which
drafter set and length a round takes, the recheck rounds, hysteresis, and sampling's single drafters."""
import pytest
import torch

from leanops.minions.controller import PLAIN, Controller
from leanops.minions.policy import LengthPolicy, VoteWeights, acceptance_estimate, expected_tokens


def _controller(alphas, draft_costs, vote_alpha=None, vote_cost=0.0, c0=5e-3, c1=1e-4, min_gamma=0, gamma=4,
                **kwargs):
    """A controller fed exact measurements: SSM i accepts with ``alphas[i]`` and drafts a token in
    ``draft_costs[i]`` seconds, the vote of all accepts with ``vote_alpha`` and costs ``vote_cost`` a round;
    an LLM pass of w tokens per row takes c0 + c1 * w seconds."""
    k = len(alphas)
    vote = VoteWeights(k, decay=1.0)
    n = 10_000  # counts large enough that the Beta(1, 1) prior does not show
    vote.update(torch.tensor([a * n for a in alphas], dtype=torch.float64),
                torch.tensor([(1 - a) * n for a in alphas], dtype=torch.float64), list(range(k)))
    length = LengthPolicy(min_gamma, 8, gamma, hysteresis=1.0, recheck_every=kwargs.get("recheck_every", 16))
    for _ in range(3):
        for w in range(1, 10):
            length.verify.record(w, c0 + c1 * w)
    ctl = Controller(k, vote, length, decay=0.0, **kwargs)
    for i, c in enumerate(draft_costs):
        ctl.record_draft(i, c * 4, 4)
    if vote_alpha is not None:
        ctl.vote_counts = [vote_alpha * n, (1 - vote_alpha) * n]
    ctl.vote_cost = vote_cost
    return ctl


def _rate(alpha, g, c0, c1, draft):
    return expected_tokens(alpha, g) / (c0 + c1 * (g + 1) + g * draft)


def test_picks_the_single_best_drafter_when_the_vote_adds_only_cost():
    ctl = _controller([0.5, 0.9, 0.3], [2e-4] * 3, vote_alpha=0.9, vote_cost=1e-3)
    drafters, gamma = ctl.plan(1, do_sample=False, hidden=0.0)
    assert drafters == (1,)
    want = max(range(0, 9), key=lambda g: _rate(0.9, g, 5e-3, 1e-4, 2e-4))
    assert gamma == want > 0


def test_picks_the_vote_when_its_acceptance_pays_for_its_cost():
    ctl = _controller([0.7, 0.7, 0.6], [1e-4] * 3, vote_alpha=0.95, vote_cost=2e-4)
    assert ctl.plan(1, do_sample=False, hidden=0.0)[0] == (0, 1, 2)
    # the same acceptance, but dearer drafters: the vote drafts with all three one after another and loses
    dear = _controller([0.7, 0.7, 0.6], [1.5e-3] * 3, vote_alpha=0.95, vote_cost=2e-4)
    assert dear.plan(1, do_sample=False, hidden=0.0)[0] in ((0,), (1,))


def test_a_cheaper_drafter_wins_over_a_better_but_dearer_one():
    # 0.8 at an LLM pass's cost per token vs 0.6 for free: tokens per second, not acceptance, decides
    ctl = _controller([0.8, 0.6], [5e-3, 1e-6])
    assert ctl.plan(1, do_sample=False, hidden=0.0)[0] == (1,)


def test_plain_steps_where_speculation_does_not_pay():
    ctl = _controller([0.05, 0.02], [2e-3, 2e-3], vote_alpha=0.05)
    assert ctl.plan(1, do_sample=False, hidden=0.0) == (PLAIN, 0)
    with_floor = _controller([0.05, 0.02], [2e-3, 2e-3], vote_alpha=0.05, min_gamma=1)
    assert with_floor.plan(1, do_sample=False, hidden=0.0)[1] >= 1  # min_gamma=1 never steps plain


def test_recheck_rounds_try_the_other_sets_in_turn_and_do_not_move_the_choice():
    ctl = _controller([0.5, 0.9, 0.3], [2e-4] * 3, vote_alpha=0.5, vote_cost=1e-3, recheck_every=8)
    assert ctl.plan(0, do_sample=False, hidden=0.0)[0] == (0, 1, 2)  # the first round measures every SSM
    plans = [ctl.plan(r, do_sample=False, hidden=0.0)[0] for r in range(1, 41)]
    rechecks = [d for r, d in zip(range(1, 41), plans) if r % 8 == 0]
    assert rechecks == [(0,), (2,), (0, 1, 2), (0,), (2,)]  # every set but the current one, in turn
    assert all(d == (1,) for r, d in zip(range(1, 41), plans) if r % 8)
    assert ctl.current[0] == (1,)


def test_hysteresis_keeps_the_current_set_unless_clearly_better():
    alphas, cost = [0.80, 0.82], [2e-4] * 2
    ctl = _controller(alphas, cost, hysteresis=1.5)
    ctl.current = ((0,), 4)
    assert ctl.plan(1, do_sample=False, hidden=0.0)[0] == (0,)  # 1 is better, but not by 1.5x
    loose = _controller(alphas, cost, hysteresis=1.0)
    loose.current = ((0,), 4)
    assert loose.plan(1, do_sample=False, hidden=0.0)[0] == (1,)


def test_sampling_drafts_with_single_ssms_only():
    ctl = _controller([0.5, 0.9, 0.3], [2e-4] * 3, vote_alpha=0.99, recheck_every=4)
    for r in range(1, 13):
        drafters, _ = ctl.plan(r, do_sample=True, hidden=0.0)
        # a recheck round tries another single SSM: sampling verifies one drafter's own distribution
        assert drafters == ((1,) if r % 4 else ((0,), (2,))[(r // 4 - 1) % 2])


def test_select_false_always_votes_with_all():
    ctl = _controller([0.5, 0.9, 0.3], [2e-4] * 3, vote_alpha=0.5, vote_cost=1e-3, select=False)
    assert all(ctl.plan(r, do_sample=False, hidden=0.0)[0] == (0, 1, 2) for r in range(1, 10))


def test_adaptive_false_keeps_the_given_length():
    ctl = _controller([0.99, 0.9], [1e-6, 1e-6], adaptive=False, gamma=3)
    assert {ctl.plan(r, do_sample=False, hidden=0.0)[1] for r in range(1, 20)} == {3}


def test_costs_and_acceptance_come_from_the_measurements():
    ctl = Controller(2, VoteWeights(2), LengthPolicy(0, 8, 4), decay=0.5)
    assert ctl.cost((0,)) == 0.0  # unmeasured: counts as free, so it gets tried
    ctl.record_draft(0, 0.004, 4)
    ctl.record_draft(0, 0.012, 4)
    ctl.record_draft(0, 1.0, 0)  # no tokens drafted: nothing to learn
    assert ctl.cost((0,)) == pytest.approx(0.5 * 1e-3 + 0.5 * 3e-3)
    ctl.record_vote(0.002, accepted=6, rejections=2)
    assert ctl.alpha((0, 1)) == pytest.approx(acceptance_estimate(6, 2))
    assert ctl.cost((0, 1)) == pytest.approx(ctl.cost((0,)) + 0.5 * 0.002 / 4)  # the vote op spread over gamma
