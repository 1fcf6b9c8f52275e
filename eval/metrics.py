"""Evaluation metrics: the scoring of :mod:`masksearch.rewards.metrics`, shared with training validation.

``masksearch eval`` scores every response with :func:`score_sample`, the function the training
reward (``rewards/verl_entry.py``, the one file verl loads) uses for its validation metrics
(``eval_metrics``), so the numbers of both are the same. There is no second verl entry here.

>>> score_sample("nq", "<think>t</think><answer>Paris</answer>", ["Paris"])["em"]
1.0
"""

from masksearch.rewards.metrics import DEFAULT_METRICS, SAMPLE_KEYS, empty_scores, metric_name, score_sample

__all__ = ["DEFAULT_METRICS", "SAMPLE_KEYS", "empty_scores", "metric_name", "score_sample"]
