"""The policy teacher: a served search agent run in the search environment, as in evaluation."""

from __future__ import annotations

from typing import Any

from masksearch.sft.endpoint import ResilientGenerator
from masksearch.sft.synthesis.config import SynthesisConfig
from masksearch.sft.synthesis.items import Episode, SynthesisItem
from masksearch.sft.synthesis.search import SearchFn

__all__ = ["PolicyTeacher"]


class PolicyTeacher:
    """A served search agent run in the search environment (``masksearch.env.standalone``)."""

    def __init__(
        self, generator: ResilientGenerator, tokenizer: Any, search: SearchFn, config: SynthesisConfig
    ):
        self.generator = generator
        self.tokenizer = tokenizer
        self.search = search
        self.config = config
        self.env_config = config.env_config()

    def run(self, item: SynthesisItem) -> Episode:
        from masksearch.env.standalone import run_search_episode

        traj = run_search_episode(
            self.generator,
            self.tokenizer,
            item.prompt,
            self.search,
            self.env_config,
            max_response_tokens=self.config.max_response_tokens,
        )
        return Episode(turns=list(traj.turns), stop_reason=traj.stop_reason)
