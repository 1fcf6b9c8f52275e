"""``masksearch_agent``: the multi-turn search environment as a verl agent loop.

Select it per sample with the dataset column ``agent_name = "masksearch_agent"`` (or
``actor_rollout_ref.rollout.agent.default_agent_loop=masksearch_agent``) and make verl load it
with the YAML shipped here, so registration never depends on import side effects::

    actor_rollout_ref.rollout.agent.agent_loop_config_path=$(python -c \\
        "from masksearch.env.agent_loop import agent_loop_config_path as p; print(p())")

Settings come from ``+masksearch.env.*`` (see :mod:`masksearch.env.config`). The loop is
token-in/token-out: it renders the prompt once with the chat template, sends ids to
``server_manager.generate``, appends the generated ids (mask 1, rollout log-probs) and the
observation ids (mask 0, log-prob 0.0), and never re-tokenises the context. The turn logic is
:class:`masksearch.env.session.SearchSession`, shared with the standalone runner.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput, register
from verl.utils.profiler import simple_timer
from verl.utils.rollout_trace import rollout_trace_op
from verl.workers.rollout.replica import TokenOutput

from masksearch.core.logs import module_logger
from masksearch.env.config import SearchEnvConfig
from masksearch.env.prompts import apply_system_prompt
from masksearch.env.retrieval import asearch_one, get_search_client
from masksearch.env.session import AgentState, SearchSession

logger = module_logger(__name__)

__all__ = ["AGENT_NAME", "SearchAgentLoop", "agent_loop_config_path", "build_sampling_params"]

#: The name datasets put in their ``agent_name`` column.
AGENT_NAME = "masksearch_agent"
_CONFIG_FILE = Path(__file__).resolve().parent / "config" / "agent_loops.yaml"


def agent_loop_config_path() -> str:
    """Absolute path of the agent-loop YAML to give ``rollout.agent.agent_loop_config_path``."""
    return str(_CONFIG_FILE)


def build_sampling_params(
    base: dict[str, Any], max_tokens: int, stop: tuple[str, ...] | list[str]
) -> dict[str, Any]:
    """A fresh sampling-params dict for one turn (backends pop keys from it, so never reuse one).

    Adds ``max_tokens`` (the rest of the response budget), ``stop`` and
    ``include_stop_str_in_output=True`` to verl's params (temperature, top_p, top_k,
    repetition_penalty, logprobs).
    """
    params = dict(base)
    params["max_tokens"] = int(max_tokens)
    params["stop"] = list(stop)
    params["include_stop_str_in_output"] = True
    return params


@dataclass
class _EpisodeData:
    """Everything one ``run`` carries between states."""

    messages: list[dict[str, Any]]
    sampling_params: dict[str, Any]
    request_id: str
    priority: int
    prompt_ids: list[int] = field(default_factory=list)
    session: SearchSession | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    gen_extra_fields: dict[str, Any] = field(default_factory=dict)


@register(AGENT_NAME)
class SearchAgentLoop(AgentLoopBase):
    """Think / ``<search>`` / ``<information>`` / ``<answer>`` rollouts against a retriever.

    verl instantiates it once per sample (``hydra.utils.instantiate`` in ``AgentLoopWorker``);
    keyword arguments from the YAML entry are :class:`SearchEnvConfig` fields that override
    ``trainer_config.masksearch.env`` (any other key is an error). ``search_client`` injects a client (tests, custom setups);
    otherwise one client per process is built on the first search.
    """

    def __init__(self, *args: Any, search_client: Any = None, **kwargs: Any):
        # everything but verl's own arguments is an env setting; a typo is an error (load_settings)
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k not in _BASE_KWARGS}
        super().__init__(*args, **kwargs)
        self.env_config = SearchEnvConfig.resolve(self.config, overrides)
        self.response_length = int(self.rollout_config.response_length)
        self._search_client = search_client
        if search_client is None and not self.env_config.has_retriever:
            get_search_client(self.env_config)  # raises the one-line "no retriever configured" error

    @rollout_trace_op
    async def run(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs: Any) -> AgentLoopOutput:
        priority = int(priority)
        full_determinism = bool(getattr(self.rollout_config, "full_determinism", False))
        data = _EpisodeData(
            messages=apply_system_prompt(list(kwargs["raw_prompt"]), self.env_config.system_prompt),
            sampling_params=dict(sampling_params),
            request_id=f"det-{priority}" if full_determinism else uuid4().hex,
            priority=priority,
        )
        state = AgentState.PENDING
        while state is not AgentState.TERMINATED:
            if state is AgentState.PENDING:
                state = await self._handle_pending_state(data)
            elif state is AgentState.GENERATING:
                state = await self._handle_generating_state(data)
            elif state is AgentState.SEARCHING:
                state = await self._handle_searching_state(data)
            else:  # pragma: no cover - the enum has no other member
                raise RuntimeError(f"invalid agent state {state}")
        return self._build_output(data)

    async def _handle_pending_state(self, data: _EpisodeData) -> AgentState:
        """Render the prompt once (chat template, generation prompt, capped at prompt_length)."""
        data.prompt_ids = list(await self.ct_build_initial_tokens(data.messages))
        data.session = SearchSession(self.tokenizer, self.env_config, response_budget=self.response_length)
        return data.session.state

    async def _handle_generating_state(self, data: _EpisodeData) -> AgentState:
        """One model turn: generate up to the rest of the budget, then let the session parse it."""
        session = data.session
        request = session.next_request()
        params = build_sampling_params(data.sampling_params, request.max_tokens, request.stop)
        with simple_timer("generate_sequences", data.metrics):
            output: TokenOutput = await self.server_manager.generate(
                request_id=data.request_id,
                prompt_ids=data.prompt_ids + session.response_ids,
                sampling_params=params,
                priority=data.priority,
            )
        preempted = output.num_preempted if output.num_preempted is not None else None
        if "num_preempted" not in data.metrics:
            data.metrics["num_preempted"] = -1 if preempted is None else preempted
        elif preempted is not None:
            data.metrics["num_preempted"] = max(data.metrics["num_preempted"], 0) + preempted
        self._merge_generation_extra_fields(data, output.extra_fields or {})
        return session.add_generation(
            output.token_ids,
            output.log_probs,  # None when the backend returned none (rollout.calculate_log_probs=False)
            aborted=output.stop_reason == "aborted",
        )

    async def _handle_searching_state(self, data: _EpisodeData) -> AgentState:
        """Run the pending query; failures come back as ``Search failed: …`` observations."""
        session = data.session
        with simple_timer("tool_calls", data.metrics):
            client = await self._get_client()
            result = await asearch_one(client, session.pending_query, self.env_config.topk)
        return session.add_search_result(result.hits, result.error, result.latency_s, result.cached)

    @staticmethod
    def _merge_generation_extra_fields(data: _EpisodeData, extra: dict[str, Any]) -> None:
        """Keep the first turn's fields; later turns only move ``max_global_steps`` forward."""
        if not data.gen_extra_fields:
            data.gen_extra_fields.update(extra)
            return
        latest = extra.get("max_global_steps")
        if latest is not None:
            data.gen_extra_fields["max_global_steps"] = latest

    async def _get_client(self) -> Any:
        if self._search_client is None:
            # Built once per process (cached); building an in-process index may take a while.
            self._search_client = await asyncio.get_running_loop().run_in_executor(
                None, get_search_client, self.env_config
            )
        return self._search_client

    def _build_output(self, data: _EpisodeData) -> AgentLoopOutput:
        session = data.session
        assert session is not None and session.stop_reason is not None
        extra_fields = dict(data.gen_extra_fields)
        extra_fields.update(session.stats())
        # Same schema as verl's single-turn/tool loops, plus why the episode ended.
        extra_fields.update(
            {"turn_scores": [], "tool_rewards": [], "env_stop_reason": session.stop_reason.value}
        )
        metrics = AgentLoopMetrics(
            generate_sequences=float(data.metrics.get("generate_sequences", 0.0)),
            tool_calls=float(data.metrics.get("tool_calls", 0.0)),
            num_preempted=int(data.metrics.get("num_preempted", -1)),
        )
        return AgentLoopOutput(
            prompt_ids=data.prompt_ids,
            response_ids=list(session.response_ids),
            response_mask=list(session.response_mask),
            response_logprobs=session.response_logprobs,
            # verl counts chat turns: the user prompt, each model turn, each observation.
            num_turns=1 + session.num_model_turns + session.num_observations,
            metrics=metrics,
            extra_fields=extra_fields,
        )


# What verl's AgentLoopWorker passes to every loop (AgentLoopBase.__init__'s arguments, the YAML
# entry's `name`, the worker's `tools`): passed through to AgentLoopBase, never env settings.
_BASE_KWARGS = frozenset(
    {"trainer_config", "server_manager", "tokenizer", "processor", "dataset_cls", "data_config"}
    | {"hf_model_type", "name", "tools"}
)
