"""Configuration of the multi-turn search environment: one dataclass, one place that reads it.

Where the values come from, lowest precedence first:

1. the dataclass defaults below;
2. the environment variables ``MASKSEARCH_INDEX_DIR`` / ``MASKSEARCH_RETRIEVER_URL`` -- used only
   when no retriever is configured anywhere else;
3. the verl trainer config, under one Hydra group at the top level: ``+masksearch.env.<key>=...``
   (e.g. ``+masksearch.env.max_turns=4 +masksearch.env.retriever_url=http://127.0.0.1:8000``);
4. keyword arguments of the agent-loop YAML entry (``- name: masksearch_agent`` /
   ``_target_: ...`` / ``max_turns: 2``), so one training run can ship two loops with different
   settings.

The values are loaded by :func:`masksearch.core.settings.load_settings` (verl's
``omega_conf_to_dataclass``): unknown keys are an error (a typo in ``masksearch.env.max_turn=3``
must not be ignored) and strings from env vars or flags become the field's type.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from masksearch.core.settings import load_settings

__all__ = ["ENV_INDEX_DIR", "ENV_RETRIEVER_URL", "TRAINER_CONFIG_KEY", "SearchEnvConfig"]

#: Environment variable naming an in-process retriever index directory (fallback).
ENV_INDEX_DIR = "MASKSEARCH_INDEX_DIR"
#: Environment variable naming a retrieval server URL (fallback).
ENV_RETRIEVER_URL = "MASKSEARCH_RETRIEVER_URL"
#: Dotted path of the env's group inside the verl trainer config.
TRAINER_CONFIG_KEY = "masksearch.env"


@dataclass(frozen=True)
class SearchEnvConfig:
    """Settings of the search environment: the one definition RL, SFT synthesis, eval and chat share.

    The defaults are the RL recipe's values (``recipes/dapo_ramp/config/dapo_ramp.yaml``,
    ``masksearch.env``; a test pins that they are equal), sized for a small (135M) model on CPU:
    4 turns (up to 3 searches and the answer), 3 documents a search, 256 tokens an observation
    (three ~100-word passages fit; more would crowd a 1k-token response budget). ``masksearch chat``,
    ``masksearch eval`` and ``masksearch sft synthesize`` take these unless a flag overrides
    them, so their episodes match RL rollouts.

    Attributes:
        max_turns: most model turns (generation calls) per episode; a search asked for in the
            last turn is not run and the episode ends with ``hit_turn_budget``.
        topk: documents retrieved per search.
        max_obs_tokens: most tokens of one observation block, the ``<information>`` wrapper
            included; longer results are cut at a token boundary and the closing tag kept.
        retriever_index: directory of an in-process index (exclusive with ``retriever_url``).
        retriever_url: URL of a Search-R1 style retrieval server (exclusive with ``retriever_index``).
        search_timeout_s: per-request timeout handed to the search client.
        search_retries: retries handed to the search client.
        system_prompt: when set, replaces the system message of every prompt (or is inserted as
            the first message); ``None`` keeps the dataset's messages unchanged.
        max_retrieval_error_rate, max_retrieval_error_steps: the RL trainer stops the run when the
            step's ``env/retrieval_error_rate`` is above the rate for that many consecutive steps
            (a dead or misconfigured retriever); rate 1.0 switches the check off.
    """

    max_turns: int = 4
    topk: int = 3
    max_obs_tokens: int = 256
    retriever_index: str | None = None
    retriever_url: str | None = None
    search_timeout_s: float = 10.0
    search_retries: int = 2
    system_prompt: str | None = None
    max_retrieval_error_rate: float = 0.5
    max_retrieval_error_steps: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.max_turns, int) or self.max_turns < 1:
            raise ValueError(f"max_turns must be an int >= 1, got {self.max_turns!r}")
        if not isinstance(self.topk, int) or self.topk < 1:
            raise ValueError(f"topk must be an int >= 1, got {self.topk!r}")
        if not isinstance(self.max_obs_tokens, int) or self.max_obs_tokens < 1:
            raise ValueError(f"max_obs_tokens must be an int >= 1, got {self.max_obs_tokens!r}")
        if not self.search_timeout_s > 0:
            raise ValueError(f"search_timeout_s must be > 0, got {self.search_timeout_s!r}")
        if not isinstance(self.search_retries, int) or self.search_retries < 0:
            raise ValueError(f"search_retries must be an int >= 0, got {self.search_retries!r}")
        if not 0.0 <= self.max_retrieval_error_rate <= 1.0:
            raise ValueError(
                f"max_retrieval_error_rate must be in [0, 1], got {self.max_retrieval_error_rate!r}"
            )
        if not isinstance(self.max_retrieval_error_steps, int) or self.max_retrieval_error_steps < 1:
            raise ValueError(
                f"max_retrieval_error_steps must be an int >= 1, got {self.max_retrieval_error_steps!r}"
            )
        for key in ("retriever_index", "retriever_url"):  # an empty flag or env var means "not set"
            if getattr(self, key) == "":
                object.__setattr__(self, key, None)
        if self.retriever_index and self.retriever_url:
            raise ValueError(
                "Set only one of retriever_index and retriever_url "
                f"(got index={self.retriever_index!r}, url={self.retriever_url!r})"
            )

    @property
    def has_retriever(self) -> bool:
        """Whether a retriever (index directory or server URL) is configured."""
        return bool(self.retriever_index or self.retriever_url)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> SearchEnvConfig:
        """Build from a plain mapping through :func:`~masksearch.core.settings.load_settings` (unknown
        keys and wrong types are one-line ``ValueError``-s naming the valid keys)."""
        return load_settings(cls, values, TRAINER_CONFIG_KEY)

    @classmethod
    def resolve(
        cls,
        trainer_config: Any = None,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> SearchEnvConfig:
        """Merge defaults, env-var fallback, ``trainer_config.masksearch.env`` and ``overrides``.

        Args:
            trainer_config: the whole verl config (``DictConfig``) or a plain mapping; ``None`` or a
                config without a ``masksearch.env`` group gives the defaults.
            overrides: per-agent-loop keyword arguments (highest precedence).
            environ: where to read the env-var fallback (``os.environ`` by default).

        Returns:
            The merged, validated config.
        """
        merged: dict[str, Any] = {}
        merged.update(_section(trainer_config))
        merged.update(dict(overrides or {}))
        if not merged.get("retriever_index") and not merged.get("retriever_url"):
            env = os.environ if environ is None else environ
            index, url = env.get(ENV_INDEX_DIR) or None, env.get(ENV_RETRIEVER_URL) or None
            if index and url:
                raise ValueError(f"Both {ENV_INDEX_DIR} and {ENV_RETRIEVER_URL} are set; set only one")
            if index:
                merged["retriever_index"] = index
            elif url:
                merged["retriever_url"] = url
        return cls.from_mapping(merged)


def _section(trainer_config: Any) -> dict[str, Any]:
    """The ``masksearch.env`` group of a verl config (``DictConfig`` or mapping) as a plain dict."""
    node: Any = trainer_config
    for part in TRAINER_CONFIG_KEY.split("."):
        node = node.get(part, None) if isinstance(node, Mapping) else None
    if node is not None and not isinstance(node, Mapping):
        raise ValueError(f"{TRAINER_CONFIG_KEY} must be a mapping, got {type(node).__name__}")
    return dict(node or {})  # a DictConfig's interpolations resolve as its values are read
