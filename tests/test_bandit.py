"""leanops.bandit: estimators (hand-made values, recovery, loop = vectorised), policies (zero-delay D-TS =
TS, allocation frequencies = posterior probabilities), the simulation study and bad input."""
import math

import numpy as np
import pytest
from scipy import integrate, stats

from leanops.bandit import (Observations, em_estimate, em_estimate_loop, exponential_cdf, grid_posterior,
                            known_delay_estimate, make_policy, prob_best, simulate, weibull_cdf)
from leanops.bandit.policies import NaiveTS, beta_params


def delayed_data(n, theta, mean_delay, seed, horizon=None):
    """Units exposed at times 0..n-1 on random arms, observed at time n (or ``horizon``)."""
    rng = np.random.default_rng(seed)
    theta, mean_delay = np.asarray(theta), np.asarray(mean_delay)
    arm = rng.integers(0, theta.size, n)
    elapsed = (horizon or n) - np.arange(n, dtype=float)
    delay = rng.exponential(mean_delay[arm])
    converted = (rng.random(n) < theta[arm]) & (delay <= elapsed)
    return elapsed, converted, np.where(converted, delay, np.nan), arm


def test_known_delay_effective_sample_size_by_hand():
    theta, n_eff, s = known_delay_estimate([1.0, 2.0, 3.0], [1, 0, 1], [0, 0, 1], [exponential_cdf(1.0),
                                                                                   exponential_cdf(2.0)])
    expect = np.array([(1 - math.exp(-1)) + (1 - math.exp(-2)), 1 - math.exp(-1.5)])
    np.testing.assert_allclose(n_eff, expect, rtol=1e-12)
    np.testing.assert_allclose(theta, [1 / expect[0], 1 / expect[1]], rtol=1e-12)
    np.testing.assert_array_equal(s, [1, 1])


def test_weibull_cdf_has_the_requested_mean():
    cdf = weibull_cdf(10.0, 1.5)
    mean, _ = integrate.quad(lambda e: 1 - cdf(np.array([e]))[0], 0, np.inf)
    assert mean == pytest.approx(10.0, rel=1e-6)


def test_em_one_cycle_by_hand():
    # one arm: unit 0 converted after 1.0, units 1 and 2 pending for 2.0 and 4.0; start theta=0.5, lam=0.25
    e, c, d = np.array([3.0, 2.0, 4.0]), np.array([1, 0, 0]), np.array([1.0, np.nan, np.nan])
    theta, lam = em_estimate(e, c, d, init=([0.5], [0.25]), cycles=1)
    w = [0.5 * math.exp(-0.25 * x) / (0.5 + 0.5 * math.exp(-0.25 * x)) for x in (2.0, 4.0)]
    total = 1 + sum(w)
    assert theta[0] == pytest.approx(total / 3, rel=1e-12)
    assert lam[0] == pytest.approx(total / (1.0 + w[0] * (2.0 + 4.0) + w[1] * (4.0 + 4.0)), rel=1e-12)


def test_em_recovers_theta_and_lambda():
    e, c, d, a = delayed_data(300_000, (0.5, 0.4, 0.3), (1000, 750, 500), seed=1, horizon=303_000)
    e = e * 0.01 + 200  # elapsed 200..3200: many conversions still pending
    c = c & (d <= e)
    theta, lam = em_estimate(e, c, np.where(c, d, np.nan), a)
    np.testing.assert_allclose(theta, [0.5, 0.4, 0.3], rtol=0.03)
    np.testing.assert_allclose(1 / lam, [1000, 750, 500], rtol=0.04)
    naive = np.bincount(a, c) / np.bincount(a)
    assert np.all(naive < 0.9 * np.array([0.5, 0.4, 0.3]))  # the data really are censored


def test_em_vectorised_equals_the_per_unit_loop_and_warm_start():
    e, c, d, a = delayed_data(3000, (0.2, 0.1), (400, 100), seed=2)
    for cycles in (1, 7):
        np.testing.assert_allclose(em_estimate(e, c, d, a, cycles=cycles), em_estimate_loop(e, c, d, a, cycles=cycles),
                                   rtol=1e-10)
    theta, lam, used = em_estimate(e, c, d, a, return_cycles=True)
    assert used > 3
    _, _, again = em_estimate(e, c, d, a, init=(theta, lam), return_cycles=True)
    assert again <= 2
    one_arm = em_estimate(e[a == 0], c[a == 0], d[a == 0])  # arm=None: all units are one arm
    np.testing.assert_allclose(one_arm[0], theta[:1], rtol=1e-6)


def test_em_arm_without_conversions_keeps_pooled_delay():
    e = np.array([10.0, 20.0, 30.0, 40.0])
    theta, lam = em_estimate(e, [1, 0, 0, 0], [5.0, 0, 0, 0], [0, 0, 1, 1])
    assert theta[1] < 1e-3 and lam[1] == pytest.approx(1 / 5.0)
    theta, lam = em_estimate(e, [0, 0, 0, 0], None, [0, 0, 0, 0], n_arms=2)
    assert np.isnan(theta[1]) and np.isnan(lam[1])


def test_grid_posterior_matches_brute_force_integration():
    e, c, d, _ = delayed_data(60, (0.4,), (20,), seed=3)
    post = grid_posterior(e, c, d, theta_nodes=32, lam_nodes=32)
    lo, hi = math.log(0.01 / e.max()), math.log(100 / e.max())
    th = (np.arange(400) + 0.5) / 400
    ll = lo + (hi - lo) * (np.arange(400) + 0.5) / 400
    lam = np.exp(ll)
    logp = c.sum() * (np.log(th)[:, None] + ll) - np.nansum(d) * lam
    logp = logp + np.log1p(th[:, None, None] * (np.exp(-np.outer(lam, e[~c]))[None] - 1)).sum(2)
    w = np.exp(logp - logp.max())
    w /= w.sum()
    theta_mean, lam_mean = post.mean()
    assert theta_mean[0] == pytest.approx((w.sum(1) * th).sum(), abs=2e-3)
    assert lam_mean[0] == pytest.approx((w.sum(0) * lam).sum(), rel=1e-2)
    draws = post.sample_theta(np.random.default_rng(0), 20000)
    assert draws.mean() == pytest.approx(theta_mean[0], abs=5e-3)


def test_known_delay_ts_with_zero_delays_is_ordinary_ts():
    e, c, d, a = delayed_data(500, (0.3, 0.2, 0.25), (1, 1, 1), seed=4)
    obs = Observations.from_arrays(a, e, c, d)
    no_delay = make_policy("dts_known", 3, delay_cdfs=lambda x: np.ones_like(x))
    np.testing.assert_array_equal(no_delay.posterior_samples(obs, np.random.default_rng(5)),
                                  NaiveTS(3).posterior_samples(obs, np.random.default_rng(5)))
    np.testing.assert_array_equal(no_delay.allocate(100, obs, np.random.default_rng(6)),
                                  make_policy("ts_naive", 3).allocate(100, obs, np.random.default_rng(6)))


def test_allocation_frequencies_match_posterior_probability_of_best():
    # two arms, naive TS: Beta(1+12, 1+88) vs Beta(1+9, 1+91); P(arm 0 best) by numerical integration
    obs = Observations.from_arrays(np.repeat([0, 1], 100), np.ones(200),
                                   np.r_[np.arange(100) < 12, np.arange(100) < 9])
    (a0, a1), (b0, b1) = beta_params(np.array([12.0, 9.0]), np.array([100.0, 100.0]))
    exact, _ = integrate.quad(lambda x: stats.beta.pdf(x, a0, b0) * stats.beta.cdf(x, a1, b1), 0, 1)
    pol = make_policy("ts_naive", 2, draws=200_000)
    p = pol.probabilities(obs, np.random.default_rng(7))
    assert p[0] == pytest.approx(exact, abs=0.006)
    n = 20_000
    got = np.bincount(pol.allocate(n, obs, np.random.default_rng(8)), minlength=2)[0] / n
    assert abs(got - exact) < 4 * math.sqrt(exact * (1 - exact) / n) + 0.006
    floored = make_policy("ts_naive", 2, draws=200_000, min_share=0.3).probabilities(obs, np.random.default_rng(7))
    np.testing.assert_allclose(floored, 0.3 + 0.4 * p, atol=1e-12)


def test_prob_best_and_ucb_and_ab():
    np.testing.assert_allclose(prob_best(np.array([[1, 2], [3, 1], [0, 5], [2, 2]])), [0.5, 0.5])
    obs = Observations.from_arrays(np.repeat([0, 1, 2], 50), np.full(150, 1e6), np.r_[np.arange(50) < 5,
                                   np.arange(50) < 40, np.arange(50) < 10], None)
    cdfs = [exponential_cdf(1.0)] * 3
    for name in ("ducb", "dbucb"):
        assert set(make_policy(name, 3, delay_cdfs=cdfs).allocate(30, obs, np.random.default_rng(0))) == {1}
    ab = make_policy("ab", 3).allocate(30, obs, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(ab), [10, 10, 10])


def test_simulate_shapes_regret_and_reproducibility():
    r = simulate("ab", (0.5, 0.4, 0.3), (50, 40, 30), n=600, batch=100, reps=2, seed=3)
    assert r.cumulative_regret.shape == (2, 600) and r.arm_share.shape == (2, 3)
    assert r.final_regret == pytest.approx([200 * 0.1 + 200 * 0.2] * 2)  # balanced split: exact regret
    s = simulate("dts_em", (0.5, 0.4, 0.3), (50, 40, 30), n=600, batch=100, reps=2, seed=3)
    assert np.all(np.diff(s.cumulative_regret, axis=1) >= 0)
    np.testing.assert_allclose(s.arm_share.sum(1), 1)
    again = simulate("dts_em", (0.5, 0.4, 0.3), (50, 40, 30), n=600, batch=100, reps=2, seed=3, workers=2)
    np.testing.assert_array_equal(s.cumulative_regret, again.cumulative_regret)
    w = simulate("dts_known", (0.5, 0.4, 0.3), (50, 40, 30), delay_dist="weibull", n=300, batch=100, reps=1)
    assert w.cumulative_regret.shape == (1, 300)


@pytest.mark.parametrize("call, message", [
    (lambda: simulate("ab", (0.5, 1.2), (10, 10), n=10, reps=1), "p must hold conversion rates in"),
    (lambda: simulate("ab", (0.5, -0.1), (10, 10), n=10, reps=1), "p must hold conversion rates in"),
    (lambda: simulate("ab", (0.5, 0.4), (10, 0), n=10, reps=1), "delay_means must be positive"),
    (lambda: simulate("ab", (0.5, 0.4), (10, -5), n=10, reps=1), "delay_means must be positive"),
    (lambda: simulate("ab", (0.5, 0.4), (10,), n=10, reps=1), "delay_means must have one entry per arm"),
    (lambda: simulate("thompson", (0.5, 0.4), (10, 10)), "policy must be one of"),
    (lambda: make_policy("greedy", 2), "policy must be one of"),
    (lambda: make_policy("dts_known", 2), "needs delay_cdfs"),
    (lambda: simulate("ab", (0.5, 0.4), (10, 10), delay_dist="gamma"), "delay_dist must be"),
    (lambda: simulate("ab", (0.5, 0.4), (10, 10), n=0), "n must be an int >= 1"),
    (lambda: em_estimate([1.0, -2.0], [0, 0], None), "elapsed must hold finite times >= 0"),
    (lambda: em_estimate([1.0, 2.0], [0, 1, 0], None), "converted must have the length of elapsed"),
    (lambda: em_estimate([1.0, 2.0], [0, 1], [1.0, 1.0], [0]), "arm must have the length of elapsed"),
    (lambda: em_estimate([1.0, 2.0], [0, 1], [1.0]), "delay must have the length of elapsed"),
    (lambda: em_estimate([1.0, 2.0], [0, 1], [0, 5.0]), "delay of a converted unit cannot exceed"),
    (lambda: em_estimate([1.0], [2], None), "converted must hold 0/1"),
    (lambda: em_estimate([1.0], [0], None, [-1]), "arm must hold non-negative integer"),
    (lambda: em_estimate([1.0], [0], None, [3], n_arms=2), "n_arms is 2"),
    (lambda: em_estimate([1.0], [0], None, cycles=-1), "cycles must be"),
    (lambda: known_delay_estimate([1.0], [0], None, [exponential_cdf(1)] * 2), "one callable per arm"),
    (lambda: exponential_cdf(0.0), "mean must be positive"),
    (lambda: weibull_cdf(1.0, -1.0), "weibull_shape must be positive"),
    (lambda: make_policy("ab", 2, min_share=0.6), "min_share must be in"),
    (lambda: make_policy("ab", 0), "n_arms must be a positive int"),
    (lambda: make_policy("ab", 2).allocate(-1, Observations.empty(2)), "n must be a non-negative int"),
    (lambda: make_policy("ts_naive", 3).allocate(1, Observations.empty(2)), "obs has 2 arms"),
    (lambda: grid_posterior([1.0], [0], None, theta_nodes=1), "theta_nodes must be an int >= 2"),
])
def test_bad_input_is_rejected_with_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
