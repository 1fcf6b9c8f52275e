"""The one scoring function behind training validation and ``masksearch eval``.

:func:`score_sample` scores one response against its gold answers with ``masksearch.rewards``
(the same grammar, answer extraction and answer rewards the RL reward uses) and returns one number
per answer metric plus the format check:

    {"em": 1.0, "f1": 1.0, "recall": 1.0, "format_ok": 1.0, "format_reason": "ok",
     "num_searches": 1, "pred": "Paris"}

Each metric is the reward's ``answer_score`` for ``answer_reward=<name>``: the extracted
``<answer>`` scored against the gold aliases (max over aliases for QA, mean over masks for RAMP
data sources), **not** gated by the format, so a response with a readable answer but a grammar
slip still counts, and the format-valid share is reported next to it. A response without a
closed ``<answer>`` scores 0 everywhere. Metric names: ``em``, ``f1``, ``recall``,
``recall_lp`` (``recall_length_penalty``), ``judge`` (``llm_judge``); any other registered reward
keeps its name.

How training validation maps onto it
------------------------------------
verl validates with the training reward function and logs every numeric key it returns as
``val-aux/<data_source>/<key>/mean@N`` (``acc`` as ``val-core/...``). The one reward file verl
loads (``rewards/verl_entry.py``, :func:`masksearch.rewards.verl_reward_path`) exports
``masksearch.rewards.compute_score``; given ``eval_metrics`` it returns the training reward's keys
unchanged (``score``, ``acc``, ...) plus the :func:`score_sample` metrics (:func:`add_eval_metrics`),
so a recipe that sets::

    reward.custom_reward_function.path=$(python -c 'import masksearch.rewards as r; print(r.verl_reward_path())')
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.answer_reward=recall      # training reward, as before
    +reward.custom_reward_function.reward_kwargs.eval_metrics=[em,f1,recall]

trains on exactly the same ``score``/``acc`` and additionally logs
``val-aux/<data_source>/em/mean@1``, ``.../f1/mean@1`` and ``.../recall/mean@1``. With greedy
validation (``actor_rollout_ref.rollout.val_kwargs.do_sample=False``, ``n=1``) these are the
numbers ``masksearch eval`` writes to ``results.json`` (``per_data_source.<ds>.em/f1/recall``)
for the same checkpoint, prompts and env settings (``masksearch eval`` scores through
:func:`score_sample` too). ``eval_metrics=[em,f1,recall,llm_judge]`` adds the judge. The extra keys cost three string comparisons per sample.

>>> r = "<think>t</think><search>capital of France</search><information>Doc 1</information><answer>Paris</answer>"
>>> s = score_sample("hotpotqa", r, ["Paris"])
>>> s["em"], s["f1"], s["recall"], s["format_ok"], s["num_searches"]
(1.0, 1.0, 1.0, 1.0, 1)
>>> score_sample("hotpotqa", "<think>t</think><answer>Paris", ["Paris"])["recall"]  # never closed
0.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DEFAULT_METRICS",
    "SAMPLE_KEYS",
    "add_eval_metrics",
    "empty_scores",
    "metric_name",
    "score_sample",
]

#: Answer rewards every evaluation reports.
DEFAULT_METRICS: tuple[str, ...] = ("em", "f1", "recall")
#: Keys besides the metrics, in every :func:`score_sample` result.
SAMPLE_KEYS: tuple[str, ...] = ("format_ok", "format_reason", "num_searches", "pred")

_SHORT_NAMES = {"llm_judge": "judge", "recall_length_penalty": "recall_lp"}


def metric_name(answer_reward: str) -> str:
    """The result key of an answer reward.

    >>> metric_name("llm_judge"), metric_name("em"), metric_name("recall_length_penalty")
    ('judge', 'em', 'recall_lp')
    """
    return _SHORT_NAMES.get(answer_reward, answer_reward)


def score_sample(
    data_source: Any,
    response_text: Any,
    golds: Any,
    extra_info: Mapping[str, Any] | None = None,
    answer_rewards: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, Any]:
    """Score one response with each answer reward of ``answer_rewards``.

    Args:
        data_source: the row's ``data_source`` (``ramp`` sources are scored per mask).
        response_text: the decoded response (no prompt), observations included.
        golds: the gold aliases (anything ``compute_score`` accepts as ground truth).
        extra_info: the row's extra info (RAMP reads ``masked_text``); may be None.
        answer_rewards: registered reward names (``em``, ``f1``, ``recall``, ``llm_judge``...).

    Returns:
        ``{metric_name(r): answer score in [0, 1] for r in answer_rewards}`` plus
        ``format_ok`` (0.0/1.0), ``format_reason``, ``num_searches`` and ``pred``.

    Raises:
        KeyError: an unknown reward name.
    """
    from masksearch.rewards import compute_score

    if not answer_rewards:
        raise ValueError("answer_rewards must name at least one reward")
    out: dict[str, Any] = {}
    first: dict[str, Any] | None = None
    for reward in answer_rewards:
        result = compute_score(data_source, response_text, golds, extra_info, answer_reward=reward)
        out[metric_name(reward)] = float(result["answer_score"])
        first = first or result
    assert first is not None
    out.update({key: first[key] for key in SAMPLE_KEYS})
    return out


def empty_scores(answer_rewards: Sequence[str] = DEFAULT_METRICS, reason: str = "error") -> dict[str, Any]:
    """The scores of a sample that produced no response (all metrics 0, format invalid).

    >>> empty_scores(("em",))
    {'em': 0.0, 'format_ok': 0.0, 'format_reason': 'error', 'num_searches': 0, 'pred': ''}
    """
    out: dict[str, Any] = {metric_name(r): 0.0 for r in answer_rewards}
    out.update({"format_ok": 0.0, "format_reason": reason, "num_searches": 0, "pred": ""})
    return out


def add_eval_metrics(
    result: dict[str, Any],
    data_source: Any,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None,
    eval_metrics: Sequence[str],
) -> dict[str, Any]:
    """``result`` (a training reward dict) with one extra float per metric of ``eval_metrics``.

    The training keys stay unchanged; the same keys are added for every sample (verl builds its
    arrays from the first sample's keys).

    Raises:
        ValueError: a metric name collides with a training key.

    >>> out = add_eval_metrics({"score": 1.0}, "nq", "<think>t</think><answer>Paris</answer>", ["Paris"], None, ["em"])
    >>> out
    {'score': 1.0, 'em': 1.0}
    """
    metrics = score_sample(data_source, solution_str, ground_truth, extra_info, tuple(eval_metrics))
    for reward in eval_metrics:
        key = metric_name(reward)
        if key in result:  # never shadow a training key
            raise ValueError(f"eval metric {key!r} collides with a reward key")
        result[key] = metrics[key]
    return result
