"""File that verl loads by path as ``reward.custom_reward_function.path``.

verl imports custom reward functions from a file, not a module; this file only re-exports the
installed package's function so that there is one implementation. Get its path with
``masksearch.rewards.verl_reward_path()`` and set ``reward.custom_reward_function.name=compute_score``.
"""

from masksearch.rewards import compute_score

__all__ = ["compute_score"]
