"""Adaptive experimentation with delayed binary feedback (arXiv 2202.00846): delay-corrected Thompson
sampling with EM delay estimates, baseline policies, the paper's simulation study and an experiment store
on SQLite."""
from .estimators import GridPosterior, em_estimate, em_estimate_loop, grid_posterior, known_delay_estimate
from .model import Observations, delay_cdfs, exponential_cdf, weibull_cdf
from .policies import POLICY_NAMES, Policy, expected_loss, make_policy, prob_best
from .simulate import SimulationResult, simulate

__all__ = ["GridPosterior", "em_estimate", "em_estimate_loop", "grid_posterior", "known_delay_estimate",
           "Observations", "delay_cdfs", "exponential_cdf", "weibull_cdf", "POLICY_NAMES", "Policy",
           "expected_loss", "make_policy", "prob_best", "SimulationResult", "simulate", "Experiment"]


def __getattr__(name):  # the SQLite store loads only when asked for
    if name == "Experiment":
        from .store import Experiment
        return Experiment
    raise AttributeError(name)
