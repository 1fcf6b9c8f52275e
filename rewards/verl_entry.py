"""The one file verl loads by path as ``reward.custom_reward_function.path`` (training and validation).

verl imports custom reward functions from a file, not a module; this file only re-exports the
installed package's function so that there is one implementation. Get its path with
``masksearch.rewards.verl_reward_path()`` and set ``reward.custom_reward_function.name=compute_score``;
``reward_kwargs.eval_metrics=[em,f1,recall]`` adds the metrics ``masksearch eval`` reports, so
validation and eval score through the same function (:mod:`masksearch.rewards.metrics`).
"""

from masksearch.rewards import compute_score

__all__ = ["compute_score"]
