"""masksearch.rewards: MaskSearch's rewards as verl's custom reward function.

verl loads ``compute_score`` by file path (:func:`verl_reward_path`)::

    reward.custom_reward_function.path=$(python -c 'import masksearch.rewards as r; print(r.verl_reward_path())')
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.answer_reward=recall   # or em, f1, llm_judge, file.py:fn

Validation logs the evaluation metrics through the same function:
``+reward.custom_reward_function.reward_kwargs.eval_metrics=[em,f1,recall]`` (``masksearch eval``
scores with :func:`masksearch.rewards.metrics.score_sample`, the same code).

Modules: ``metrics`` (the eval/validation metrics), ``answer`` (EM/F1/recall),
``judge`` (LLM judge), ``ramp`` (masked-span answers), ``hybrid`` (format + answer),
``registry`` (names, entry points, ``file.py:fn`` specs).
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from masksearch.core.grammar import answer_and_searches
from masksearch.core.logs import module_logger
from masksearch.core.secrets import redact
from masksearch.rewards.hybrid import RESULT_KEYS, HybridConfig, TaskKind, format_reward, hybrid_score
from masksearch.rewards.ramp import as_span_golds, masked_text_of, parse_fills
from masksearch.rewards.registry import RewardFn, get, register, registered
from masksearch.rewards.search_guard import SearchGuard

logger = module_logger(__name__)

__all__ = [
    "DEFAULT_ANSWER_REWARD",
    "RESULT_KEYS",
    "HybridConfig",
    "RewardFn",
    "compute_score",
    "format_reward",
    "get",
    "register",
    "registered",
    "resolve_reward",
    "task_kind",
    "verl_reward_path",
]

#: Answer reward used when ``answer_reward`` is not given: MaskSearch's token-level recall.
DEFAULT_ANSWER_REWARD = "recall"

_RESOLVED: dict[tuple[str, str], RewardFn] = {}
_RESOLVED_LOCK = threading.Lock()


def verl_reward_path() -> str:
    """Absolute path of the file to give verl as ``reward.custom_reward_function.path``.

    >>> verl_reward_path().endswith("verl_entry.py")
    True
    """
    return str(Path(__file__).resolve().with_name("verl_entry.py"))


def task_kind(data_source: object) -> TaskKind:
    """``"ramp"`` if any word of ``data_source`` is ``ramp`` (``ramp``, ``ramp_wiki``, ``masksearch/ramp``), else ``"qa"``.

    >>> task_kind("ramp_wiki"), task_kind("hotpotqa"), task_kind(None)
    ('ramp', 'qa', 'qa')
    """
    words = re.split(r"[^a-z0-9]+", str(data_source).lower()) if data_source is not None else []
    return "ramp" if "ramp" in words else "qa"


def _plain(value: Any) -> Any:
    """OmegaConf containers (what Hydra passes) as plain dicts/lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value


def resolve_reward(
    answer_reward: str | RewardFn = DEFAULT_ANSWER_REWARD, options: Mapping[str, Any] | None = None
) -> RewardFn:
    """The answer reward for a name/spec and options, built once per process and reused.

    Reuse matters for the LLM judge (one HTTP client, one cache, one set of counters).

    >>> resolve_reward("recall") is resolve_reward("recall")
    True
    """
    if callable(answer_reward) and not isinstance(answer_reward, str):
        return answer_reward
    if options:
        key = (str(answer_reward), json.dumps(_plain(options), sort_keys=True, default=str))
    else:
        key = (str(answer_reward), "")
    fn = _RESOLVED.get(key)  # lock-free fast path; dict reads are atomic
    if fn is not None:
        return fn
    opts = _plain(options) if options else {}
    with _RESOLVED_LOCK:
        fn = _RESOLVED.get(key)
        if fn is None:
            fn = get(str(answer_reward), **opts)
            _RESOLVED[key] = fn
            logger.info("answer reward %s%s resolved to %r", answer_reward, redact(opts) or "", fn)
    return fn


@functools.lru_cache(maxsize=64)
def _hybrid_config(answer_weight: float, format_weight: float, format_gate: bool) -> HybridConfig:
    return HybridConfig(answer_weight=answer_weight, format_weight=format_weight, format_gate=format_gate)


@functools.lru_cache(maxsize=64)
def _search_guard(closed_book: str, penalty: Any, check_grounding: bool) -> SearchGuard:
    return SearchGuard(closed_book=closed_book, closed_book_penalty=penalty, check_grounding=check_grounding)


def _fills(response: str, kind: str, ground_truth: Any, info: Mapping[str, Any] | None) -> list[str] | None:
    """The answer's fills as the reward reads them (RAMP: one per mask), None without an answer."""
    pred, _ = answer_and_searches(response)
    if pred is None:
        return None
    if kind == "ramp":
        return parse_fills(pred, len(as_span_golds(ground_truth)), masked_text_of(info))
    return [pred]


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in {"0", "false", "no", "off", ""}
    return bool(value)


def compute_score(
    data_source: Any,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    *,
    answer_reward: str | RewardFn = DEFAULT_ANSWER_REWARD,
    answer_reward_options: Mapping[str, Any] | None = None,
    answer_weight: float = 1.0,
    format_weight: float = 0.0,
    format_gate: bool | str = True,
    eval_metrics: Any = None,
    closed_book: str = "off",
    closed_book_penalty: float = 0.5,
    check_grounding: bool | str = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """verl's custom reward function: hybrid (answer + format) score of one response.

    ``score = answer_weight · answer_score · gate + format_weight · format_ok`` with
    ``gate = format_ok`` when ``format_gate`` (see ``masksearch.rewards.hybrid``). Data sources
    whose name contains the word ``ramp`` are scored as RAMP (mean per-span reward over the
    masks, ``masksearch.rewards.ramp``); everything else as QA (max over gold aliases).

    Args:
        data_source: the row's ``data_source``.
        solution_str: the decoded response (no prompt).
        ground_truth: ``reward_model.ground_truth``: aliases (str, list, numpy array, dict with
            ``target``) for QA, one item (or alias list) per mask for RAMP.
        extra_info: the row's extra info (RAMP reads ``masked_text``); may be None.
        answer_reward: registered name (``em``, ``f1``, ``recall``, ``recall_length_penalty``,
            ``llm_judge``), entry-point name, ``path/to/file.py:fn`` or a callable.
        answer_reward_options: options for a parametrised reward (e.g. ``{"max_ratio": 3}``).
        answer_weight, format_weight, format_gate: see :class:`HybridConfig`.
        eval_metrics: answer rewards to add as validation metrics (``[em, f1, recall]``: extra keys
            ``em``, ``f1``, ``recall``; :func:`masksearch.rewards.metrics.add_eval_metrics`), the
            numbers ``masksearch eval`` reports. Default: none.
        closed_book: search-health guard for RAMP answers given without any search (``off``,
            ``flag``, ``zero``: no answer reward, ``penalty``: minus ``closed_book_penalty``); on,
            it adds the key ``closed_book`` (:mod:`masksearch.rewards.search_guard`).
        closed_book_penalty: what ``closed_book=penalty`` subtracts from the score.
        check_grounding: add ``ungrounded_fills`` / ``ungrounded_answer``: answer fills whose text
            occurs in no observation (a hack signal; the score is unchanged).
        **kwargs: anything else verl passes (``reward_router_address``...) is ignored.

    Returns:
        A dict with exactly the keys ``RESULT_KEYS``: score, acc, answer_score, format_ok,
        format_reason, num_searches, pred; then the search guards' keys when they are on; then
        one key per ``eval_metrics`` entry.

    Raises:
        KeyError/ValueError: only for configuration errors (unknown reward, bad weights),
        never for bad model output or ground truth.

    >>> r = "<think>q</think><search>x</search><information>d</information><answer>Paris</answer>"
    >>> out = compute_score("hotpotqa", r, ["Paris"], None, unknown_kwarg=1)
    >>> out["score"], out["acc"], out["num_searches"], list(out) == list(RESULT_KEYS)
    (1.0, 1.0, 1, True)
    >>> compute_score("hotpotqa", r, ["Paris"], eval_metrics=["em", "f1"])["f1"]
    1.0
    >>> guarded = compute_score("ramp", "<think>t</think><answer>Paris</answer>", ["Paris"], closed_book="zero")
    >>> guarded["score"], guarded["closed_book"]
    (0.0, 1.0)
    """
    reward = resolve_reward(answer_reward, answer_reward_options)
    config = _hybrid_config(float(answer_weight), float(format_weight), _as_bool(format_gate))
    info = extra_info if isinstance(extra_info, Mapping) else None
    response = (
        solution_str if isinstance(solution_str, str) else ("" if solution_str is None else str(solution_str))
    )
    kind = task_kind(data_source)
    result = hybrid_score(response, ground_truth, kind, reward, info, config)
    guard = _search_guard(str(closed_book), closed_book_penalty, _as_bool(check_grounding))
    if guard.on:
        guard.apply(
            result,
            response,
            kind,
            _fills(response, kind, ground_truth, info),
            config.format_weight * result["format_ok"],
        )
    if eval_metrics:
        from masksearch.rewards.metrics import add_eval_metrics

        metrics = [eval_metrics] if isinstance(eval_metrics, str) else _plain(eval_metrics)
        add_eval_metrics(result, data_source, response, ground_truth, info, metrics)
    return result
