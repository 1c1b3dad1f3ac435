"""The meta-equilibrium analyser: is a trained profile an equilibrium, and which equilibria did a
sweep find?

A profile is every type's policy at one snapshot of a run. A type's payoff is its mean per-agent,
undiscounted episode reward under best-response conditions (stochastic policies, no curriculum
masks, no tax cap, theta at full strength). A deviation of type k replaces the policy of every agent
of type k while the other types keep acting from theirs; its gain over the profile, measured on
common random numbers with the economy replica as the unit, bounds the type's epsilon from below.
No Ray here: launch/analyse.py runs the best responses as Tune trials.
"""

from .config import BestResponseConfig
from .payoff import payoffs
from .profile import Profile, best_response_experiment, load_profile, run_profiles
from .stats import GainEstimate, paired_gain

__all__ = ["BestResponseConfig", "payoffs", "Profile", "best_response_experiment", "load_profile",
           "run_profiles", "GainEstimate", "paired_gain"]
