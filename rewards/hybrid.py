"""Format reward and the hybrid reward (answer + format) that verl receives.

MaskSearch trains with DAPO on "a hybrid reward system consisting of answer rewards and format
rewards". The exact combination is not given in the material available to us, so the default is
the common Search-R1-style gate, documented here and configurable:

    format_ok = 1 if validate_format(response).ok else 0           (grammar.py)
    gate      = format_ok if format_gate else 1
    score     = answer_weight · answer_score · gate + format_weight · format_ok

Defaults: ``answer_weight=1``, ``format_weight=0``, ``format_gate=True``, i.e.
``score = answer_score if the format is valid else 0``. With ``format_weight > 0`` a well-formed
but wrong response earns a small reward, which helps a model that has not learnt the format yet.
``answer_score`` is always in ``[0, 1]``; ``score`` is in ``[0, answer_weight + format_weight]``.

``acc`` (read by DAPO dynamic sampling, ``algorithm.filter_groups.metric=acc``) is 1.0 only when
the answer is fully correct (answer reward 1.0 — for RAMP, on every span) and the gate passed,
so it moves together with ``score``.

Every result has the SAME keys on every path (verl builds its extra-info arrays from the first
sample's keys): :data:`RESULT_KEYS`.

>>> r = "<think>t</think><answer>Paris</answer>"
>>> out = hybrid_score(r, ["Paris"], "qa", reward=lambda p, g: float(p == g[0]))
>>> out["score"], out["acc"], out["format_ok"], out["pred"]
(1.0, 1.0, 1.0, 'Paris')
>>> hybrid_score("Paris", ["Paris"], "qa", reward=lambda p, g: 1.0)["format_reason"]
'text outside tags'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from masksearch.core.grammar import answer_and_searches, validate_format
from masksearch.rewards.answer import as_gold_list
from masksearch.rewards.ramp import as_span_golds, masked_text_of, score_ramp

__all__ = [
    "PRED_MAX_CHARS",
    "RESULT_KEYS",
    "HybridConfig",
    "TaskKind",
    "format_reward",
    "gold_groups",
    "hybrid_score",
]

TaskKind = Literal["qa", "ramp"]

#: Keys of every result dict, in order.
RESULT_KEYS = ("score", "acc", "answer_score", "format_ok", "format_reason", "num_searches", "pred")
#: ``pred`` is truncated to this many characters (it is stored per sample by verl).
PRED_MAX_CHARS = 1000


@dataclass(frozen=True)
class HybridConfig:
    """Weights of the hybrid reward; see the module docstring for the formula.

    Args:
        answer_weight: weight of the answer score (>= 0).
        format_weight: weight of the format reward (>= 0).
        format_gate: if True, the answer score counts only when the format is valid.
    """

    answer_weight: float = 1.0
    format_weight: float = 0.0
    format_gate: bool = True

    def __post_init__(self) -> None:
        for name in ("answer_weight", "format_weight"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.answer_weight + self.format_weight <= 0:
            raise ValueError("answer_weight + format_weight must be > 0")


def format_reward(response: str) -> tuple[float, str]:
    """1.0 if the response follows the grammar, else 0.0; with the reason from the grammar.

    >>> format_reward("<think>a</think><answer>b</answer>")
    (1.0, 'ok')
    >>> format_reward("<think>a</think><answer>b</answer><answer>c</answer>")
    (0.0, 'more than one <answer>')
    """
    check = validate_format(response)
    return float(check.ok), check.reason


def gold_groups(ground_truth: object, kind: str) -> list[list[str]]:
    """The gold answers as the reward reads them: one alias list per mask (RAMP, :func:`as_span_golds`)
    or one alias list (QA, :func:`as_gold_list`). The one reader of ``ground_truth``; the viewer
    and the rules teacher use it too.

    >>> gold_groups(["Paris", ["1889", "in 1889"]], "ramp"), gold_groups({"target": ["Paris", " "]}, "qa")
    ([['Paris'], ['1889', 'in 1889']], [['Paris']])
    """
    return as_span_golds(ground_truth) if kind == "ramp" else [as_gold_list(ground_truth)]


def _clip01(value: object) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    if x != x:
        return 0.0
    return min(1.0, max(0.0, x))


def hybrid_score(
    response: str,
    ground_truth: object,
    kind: TaskKind,
    reward: Callable[[str, list[str]], float],
    extra_info: Mapping[str, Any] | None = None,
    config: HybridConfig = HybridConfig(),
) -> dict[str, Any]:
    """Score one response: extract the answer, score it (QA or RAMP), combine with the format.

    Args:
        response: the model's response (the prompt is not part of it).
        ground_truth: QA gold aliases, or RAMP spans (see :func:`gold_groups`).
        kind: ``"qa"`` or ``"ramp"``.
        reward: the answer reward ``(prediction, golds) -> float`` in ``[0, 1]``.
        extra_info: the row's extra info (RAMP reads ``masked_text``).
        config: weights and gating.

    Returns:
        A dict with exactly :data:`RESULT_KEYS`: ``score`` (float), ``acc`` (0/1),
        ``answer_score`` (float in [0, 1]), ``format_ok`` (0/1 float), ``format_reason`` (str),
        ``num_searches`` (int), ``pred`` (str, the extracted answer, "" if none).
    """
    fmt_ok, fmt_reason = format_reward(response)
    pred, num_searches = answer_and_searches(response)
    groups = gold_groups(ground_truth, kind)
    if kind == "ramp":
        answer_score, correct = score_ramp(pred, groups, reward, masked_text_of(extra_info))
    else:
        golds = groups[0]
        answer_score = _clip01(reward(pred, golds)) if pred is not None and golds else 0.0
        correct = answer_score >= 1.0
    gate = fmt_ok if config.format_gate else 1.0
    score = config.answer_weight * answer_score * gate + config.format_weight * fmt_ok
    return {
        "score": float(score),
        "acc": float(correct and gate > 0),
        "answer_score": float(answer_score),
        "format_ok": fmt_ok,
        "format_reason": fmt_reason,
        "num_searches": num_searches,
        "pred": (pred or "")[:PRED_MAX_CHARS],
    }
