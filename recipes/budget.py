"""Budgets that can succeed: does one search per mask plus the answer fit in the response budget?

A RAMP row with ``m`` masks needs, at the least, ``m`` search turns (a short ``<think>`` and a
keyword query, then the observation the env appends) and one answer turn, all inside
``data.max_response_length`` tokens and ``masksearch.env.max_turns`` turns::

    observation = min(max_obs_tokens, topk · passage_tokens + wrapper)
    needed(m)   = m · (search_turn_tokens + observation) + answer_tokens(m)
    fits(m)     = needed(m) <= max_response_length  and  m + 1 <= max_turns
    prompt      = longest rendered prompt of the training data <= max_prompt_length

The turn sizes are the short end of what the rules teacher writes
(:mod:`masksearch.sft.teachers.rules`: a one-line think and a keyword query ≈ 40 tokens; the
answer ≈ 16 + 8 per mask) — lower bounds, so a row whose mask count fails here cannot earn the
answer reward at all.

:func:`check_budget` is called once by the recipe's entry before Ray starts and prints the fit.
``MASKSEARCH_BUDGET_CHECK`` decides what a misfit does:

* ``error`` (default): refuse (:class:`~masksearch.core.errors.UserFacingError`, one line, exit 2)
  when not even a one-mask row fits; when only the larger mask counts do not, print a warning;
* ``strict``: refuse unless the largest mask count of the training data fits (``make learn``);
* ``warn``: print only; ``off``: skip the check.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masksearch.core.errors import UserFacingError
from masksearch.core.logs import module_logger

logger = module_logger(__name__)

__all__ = [
    "ANSWER_BASE_TOKENS",
    "ANSWER_PER_MASK_TOKENS",
    "CHECK_MODES",
    "ENV_CHECK",
    "PASSAGE_TOKENS",
    "SEARCH_TURN_TOKENS",
    "BudgetFit",
    "budget_fit",
    "check_budget",
    "data_stats",
    "max_fitting_masks",
]

#: One search turn: ``<think>one line</think>\n<search>≤ 20 words</search>``.
SEARCH_TURN_TOKENS = 40
#: The answer turn: ``<think>…</think>\n<answer>\n`` … ``</answer>`` plus one line per mask.
ANSWER_BASE_TOKENS = 16
ANSWER_PER_MASK_TOKENS = 8
#: One retrieved passage: a line of ``search_tool.observation.format_observation`` (100-word Wikipedia passages).
PASSAGE_TOKENS = 160
#: ``\n\n<information>`` + ``</information>\n\n``.
WRAPPER_TOKENS = 12
#: Environment variable: ``error`` (default), ``strict``, ``warn`` or ``off`` (module docstring).
ENV_CHECK = "MASKSEARCH_BUDGET_CHECK"
CHECK_MODES = ("error", "strict", "warn", "off")


@dataclass(frozen=True)
class BudgetFit:
    """The arithmetic of one configuration (see the module docstring)."""

    max_response_length: int
    max_prompt_length: int
    max_turns: int
    topk: int
    max_obs_tokens: int
    masks: int
    prompt_tokens: int | None = None

    @property
    def observation_tokens(self) -> int:
        return min(self.max_obs_tokens, self.topk * PASSAGE_TOKENS + WRAPPER_TOKENS)

    def needed(self, masks: int | None = None) -> int:
        m = self.masks if masks is None else masks
        return (
            m * (SEARCH_TURN_TOKENS + self.observation_tokens)
            + ANSWER_BASE_TOKENS
            + ANSWER_PER_MASK_TOKENS * m
        )

    def problems(self, masks: int | None = None) -> list[str]:
        m = self.masks if masks is None else masks
        out = []
        if self.needed(m) > self.max_response_length:
            out.append(
                f"{m} search(es) + answer need ~{self.needed(m)} response tokens > {self.max_response_length}"
            )
        if m + 1 > self.max_turns:
            out.append(f"{m} search(es) + answer need {m + 1} turns > max_turns={self.max_turns}")
        if self.prompt_tokens is not None and self.prompt_tokens > self.max_prompt_length:
            out.append(
                f"the longest prompt has {self.prompt_tokens} tokens > max_prompt_length={self.max_prompt_length}"
            )
        return out

    @property
    def fits(self) -> bool:
        return not self.problems()

    def line(self) -> str:
        """One line for the log: the arithmetic and the verdict."""
        prompt = "not measured" if self.prompt_tokens is None else str(self.prompt_tokens)
        verdict = "fits" if self.fits else "does NOT fit: " + "; ".join(self.problems())
        return (
            f"budget: {self.masks} mask(s) x ({SEARCH_TURN_TOKENS} search turn + {self.observation_tokens} "
            f"observation [topk={self.topk}, max_obs_tokens={self.max_obs_tokens}]) + "
            f"{ANSWER_BASE_TOKENS + ANSWER_PER_MASK_TOKENS * self.masks} answer = {self.needed()} of "
            f"{self.max_response_length} response tokens, {self.masks + 1} of {self.max_turns} turns; "
            f"longest prompt {prompt} of {self.max_prompt_length} tokens -> {verdict}"
        )

    def advice(self) -> str:
        need = self.needed()
        fitting = max_fitting_masks(self)
        return (
            f"raise data.max_response_length to >= {need} (MAX_RESPONSE_LENGTH) and masksearch.env.max_turns "
            f"to >= {self.masks + 1} (MAX_TURNS), lower masksearch.env.max_obs_tokens / topk, or build RAMP "
            f"data with --max-masks {max(fitting, 1)}; {ENV_CHECK}=warn runs anyway"
        )


def budget_fit(
    *,
    max_response_length: int,
    max_prompt_length: int,
    max_turns: int,
    topk: int,
    max_obs_tokens: int,
    masks: int,
    prompt_tokens: int | None = None,
) -> BudgetFit:
    """A :class:`BudgetFit` from plain numbers (validated)."""
    values = {
        "max_response_length": max_response_length,
        "max_prompt_length": max_prompt_length,
        "max_turns": max_turns,
        "topk": topk,
        "max_obs_tokens": max_obs_tokens,
    }
    for key, value in values.items():
        if int(value) < 1:
            raise UserFacingError(f"{key}={value}: must be >= 1")
    return BudgetFit(
        **{k: int(v) for k, v in values.items()}, masks=max(1, int(masks)), prompt_tokens=prompt_tokens
    )


def max_fitting_masks(fit: BudgetFit, limit: int = 16) -> int:
    """The largest mask count whose search-per-mask episode fits (0: not even one)."""
    best = 0
    for m in range(1, limit + 1):
        if fit.needed(m) <= fit.max_response_length and m + 1 <= fit.max_turns:
            best = m
    return best


def data_stats(path: str | os.PathLike, tokenizer: Any = None, sample: int = 256) -> tuple[int, int | None]:
    """``(largest mask count, longest rendered prompt in tokens)`` over the first ``sample`` rows.

    QA rows count as one search. The prompt is rendered with the chat template and the generation
    prompt, as verl renders it; ``None`` when no tokenizer is given.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    rows = table.slice(0, sample).to_pylist()
    masks = 1
    for row in rows:
        extra = row.get("extra_info") or {}
        masks = max(masks, int(extra.get("mask_num") or 1))
    if "extra_info" in table.column_names and len(rows) < table.num_rows:
        for extra in table.column("extra_info").to_pylist():  # the mask count of every row is cheap
            masks = max(masks, int((extra or {}).get("mask_num") or 1))
    if tokenizer is None:
        return masks, None
    longest = 0
    for row in rows:
        prompt = [dict(m) for m in row.get("prompt") or []]
        if not prompt:
            continue
        ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        longest = max(longest, len(ids))
    return masks, longest


def _config_values(overrides: Sequence[str]) -> dict[str, Any]:
    """The recipe's settings that the fit needs: the ``masksearch.*`` defaults, the YAML's values, then
    the overrides (last wins)."""
    import dataclasses

    from omegaconf import OmegaConf

    from masksearch.recipes.preflight import override_value
    from masksearch.recipes.settings import MaskSearchSettings

    yaml = OmegaConf.merge(
        {"masksearch": dataclasses.asdict(MaskSearchSettings())},
        OmegaConf.load(Path(__file__).resolve().parent / "dapo_ramp" / "config" / "dapo_ramp.yaml"),
    )
    keys = {
        "max_response_length": "data.max_response_length",
        "max_prompt_length": "data.max_prompt_length",
        "max_turns": "masksearch.env.max_turns",
        "topk": "masksearch.env.topk",
        "max_obs_tokens": "masksearch.env.max_obs_tokens",
        "train_files": "data.train_files",
        "model_path": "actor_rollout_ref.model.path",
    }
    out: dict[str, Any] = {}
    for name, key in keys.items():
        value = override_value(overrides, key)
        if value is None:
            value = OmegaConf.select(yaml, key, default=None, throw_on_missing=False)
        out[name] = None if value == "???" else value
    return out


def _tokenizer(model_path: str | None) -> Any:
    if not model_path:
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model_path)
    except Exception as exc:  # the preflight reports a bad model path; the fit goes on without it
        logger.warning("budget: tokenizer of %s not loaded (%s); prompt length not measured", model_path, exc)
        return None


def check_budget(
    overrides: Sequence[str], *, environ: dict[str, str] | None = None, echo: Any = print
) -> BudgetFit | None:
    """Print whether the recipe's budgets fit one search per mask plus the answer; refuse if not.

    Args:
        overrides: the Hydra overrides the recipe will run with.
        environ: where to read :data:`ENV_CHECK` (``os.environ`` by default).
        echo: where the line goes.

    Returns:
        The fit (``None`` when the check is off).

    Raises:
        UserFacingError: the configuration cannot fit and the check is not ``warn``.
    """
    mode = (os.environ if environ is None else environ).get(ENV_CHECK, "error").strip().lower() or "error"
    if mode not in CHECK_MODES:
        raise UserFacingError(f"{ENV_CHECK}={mode}: choose one of {', '.join(CHECK_MODES)}")
    if mode == "off":
        return None
    values = _config_values(overrides)
    masks, prompt_tokens = 1, None
    train = values.get("train_files")
    if isinstance(train, str) and train.startswith("[") and train.endswith("]"):
        train = train.strip("[]").split(",")[0].strip().strip("'\"")
    if isinstance(train, str) and Path(train).is_file() and train.endswith(".parquet"):
        try:
            masks, prompt_tokens = data_stats(train, _tokenizer(values.get("model_path")))
        except Exception as exc:  # unreadable data is the trainer's error to report
            logger.warning("budget: %s not read (%s)", train, exc)
    try:
        fit = budget_fit(
            max_response_length=int(values["max_response_length"]),
            max_prompt_length=int(values["max_prompt_length"]),
            max_turns=int(values["max_turns"]),
            topk=int(values["topk"]),
            max_obs_tokens=int(values["max_obs_tokens"]),
            masks=masks,
            prompt_tokens=prompt_tokens,
        )
    except (TypeError, ValueError) as exc:
        raise UserFacingError(f"budget: cannot read the budgets from the config ({exc})") from None
    echo(fit.line())
    if fit.fits or mode == "warn":
        return fit
    fitting = max_fitting_masks(fit)
    if mode == "strict" or fitting == 0:
        raise UserFacingError(f"budget cannot fit: {'; '.join(fit.problems())}. Fix: {fit.advice()}")
    echo(
        f"budget warning: only rows with up to {fitting} mask(s) can earn the answer reward; "
        f"rows with {fitting + 1}-{fit.masks} cannot. Fix: {fit.advice()}"
    )
    return fit
