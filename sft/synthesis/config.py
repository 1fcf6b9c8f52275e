"""Settings of one synthesis run (:class:`SynthesisConfig`) and the file names of its output."""

from __future__ import annotations

from dataclasses import dataclass, field

from masksearch.env.config import SearchEnvConfig
from masksearch.sft.endpoint import RetryPolicy

__all__ = [
    "CACHE_DIR",
    "ENDPOINT_FAILED",
    "FILL_NOT_FOUND",
    "KEPT_FILE",
    "MODES",
    "REJECTED_FILE",
    "REPORT_FILE",
    "WRONG_ANSWER",
    "SynthesisConfig",
]

KEPT_FILE = "kept.jsonl"
REJECTED_FILE = "rejected.jsonl"
REPORT_FILE = "report.json"
CACHE_DIR = "cache"
WRONG_ANSWER = "wrong answer"
ENDPOINT_FAILED = "endpoint failed"
#: Rules teacher: some fill was in no observation within the turn budget.
FILL_NOT_FOUND = "fill not found in observations"
#: Teacher kinds: LLM agents (planner / rewriter / observer), a served search policy, or the
#: deterministic rules over our own retriever (no endpoint).
MODES = ("agents", "policy", "rules")


@dataclass(frozen=True)
class SynthesisConfig:
    """Settings of one synthesis run.

    Attributes:
        mode: ``agents`` (LLM planner / rewriter / observer), ``policy`` (a served search agent)
            or ``rules`` (deterministic planner / rewriter / observer, no endpoint).
        max_turns, topk, max_obs_tokens: the env's settings; ``None`` takes the default of
            :class:`~masksearch.env.config.SearchEnvConfig` (the one definition RL, eval and chat
            use), so trajectories match RL rollouts.
        max_sub_questions: planner's limit (agents).
        max_response_tokens: response budget (generated + observation tokens).
        answer_check: answer reward name for the filter (``em``, ``f1``, ``recall``, ``llm_judge``…);
            a trajectory is kept when ``acc == 1`` (every RAMP span right).
        concurrency: items in flight at once.
        limit: only the first ``limit`` rows.
        samples_per_item: trajectories drawn per row (``policy`` rejection sampling; the others
            are deterministic or cached, so 1).
        temperature, max_tokens: teacher sampling (agents: per call; policy: per turn).
        api: ``completions`` or ``chat`` for the policy teacher (``OpenAIGenerator``).
        retry: retries and backoff for teacher calls.
        retry_failed: on resume, run "endpoint failed" items again.
        cache: keep teacher calls on disk under ``out/cache``.
    """

    mode: str = "agents"
    max_turns: int | None = None
    max_sub_questions: int = 4
    topk: int | None = None
    max_obs_tokens: int | None = None
    max_response_tokens: int = 4096
    answer_check: str = "em"
    concurrency: int = 4
    limit: int | None = None
    samples_per_item: int = 1
    temperature: float = 0.7
    max_tokens: int = 512
    api: str = "completions"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retry_failed: bool = True
    cache: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        turns = self.env_config().max_turns
        if turns < 2:
            raise ValueError(f"max_turns must be >= 2 (one search and the answer), got {turns}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.samples_per_item < 1:
            raise ValueError(f"samples_per_item must be >= 1, got {self.samples_per_item}")

    def env_config(self) -> SearchEnvConfig:
        """The env settings: ``SearchEnvConfig``'s defaults, with the fields given here."""
        given = {"max_turns": self.max_turns, "topk": self.topk, "max_obs_tokens": self.max_obs_tokens}
        return SearchEnvConfig(**{k: v for k, v in given.items() if v is not None})
