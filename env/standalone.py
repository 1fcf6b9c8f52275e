"""The search environment outside verl: run episodes with any :class:`TextGenerator`.

The turn logic is the same :class:`~masksearch.env.session.SearchSession` the verl agent loop uses;
this module only moves tokens and queries in and out, turn by turn, for a batch of episodes at
once (one batched generate call and one batched search call per turn)::

    from masksearch.env.config import SearchEnvConfig
    from masksearch.env.generators import HFGenerator
    from masksearch.env.prompts import build_messages
    from masksearch.env.retrieval import get_search_client
    from masksearch.env.standalone import format_trajectory, run_search_episode

    config = SearchEnvConfig(retriever_index="indexes/wiki-bm25", max_turns=4)
    gen = HFGenerator("Qwen/Qwen2.5-0.5B-Instruct")
    traj = run_search_episode(gen, gen.tokenizer, build_messages("Who wrote Tosca?"),
                              get_search_client(config), config)
    print(format_trajectory(traj))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from masksearch.core.grammar import extract_answer, validate_format
from masksearch.core.logs import module_logger
from masksearch.env.config import SearchEnvConfig
from masksearch.env.generators import GenerationResult, TextGenerator
from masksearch.env.prompts import apply_system_prompt
from masksearch.env.retrieval import search_many
from masksearch.env.session import STOP_STRINGS, AgentState, SearchSession, TurnRecord

logger = module_logger(__name__)

__all__ = [
    "Trajectory",
    "format_trajectory",
    "render_prompt",
    "run_search_episode",
    "run_search_episodes",
]

DEFAULT_MAX_RESPONSE_TOKENS = 1024


@dataclass
class Trajectory:
    """One episode, for people and for evaluation.

    Attributes:
        messages: the chat messages the prompt was rendered from.
        prompt_text: the rendered prompt.
        response_text: generated + observation text (special tokens skipped).
        turns: one record per model turn (text, query, observation, error, latency).
        answer: the final answer (grammar's ``extract_answer``; ``None`` when none).
        stop_reason: ``answered`` / ``no_action`` / ``length_budget`` / ``turn_budget`` / ``aborted``.
        stats: the env's per-sample counters (same keys as the verl loop's ``extra_fields``).
        format_ok: the response passes the strict grammar (``validate_format``).
        format_reason: the grammar's reason (``"ok"`` or the first violation).
        response_ids: response token ids (generated and observation).
        response_mask: 1 for generated tokens, 0 for observation tokens.
    """

    messages: list[dict[str, Any]]
    prompt_text: str
    response_text: str
    turns: list[TurnRecord]
    answer: str | None
    stop_reason: str
    stats: dict[str, Any]
    format_ok: bool
    format_reason: str
    response_ids: list[int] = field(default_factory=list)
    response_mask: list[int] = field(default_factory=list)

    @property
    def hit_turn_budget(self) -> bool:
        return bool(self.stats["hit_turn_budget"])

    @property
    def hit_length_budget(self) -> bool:
        return bool(self.stats["hit_length_budget"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (no token ids)."""
        return {
            "messages": self.messages,
            "prompt_text": self.prompt_text,
            "response_text": self.response_text,
            "turns": [t.to_dict() for t in self.turns],
            "answer": self.answer,
            "stop_reason": self.stop_reason,
            "stats": dict(self.stats),
            "format_ok": self.format_ok,
            "format_reason": self.format_reason,
        }


def render_prompt(
    tokenizer: Any, messages: Sequence[dict[str, Any]], **chat_template_kwargs: Any
) -> tuple[list[int], str]:
    """The prompt as verl renders it: chat template with the generation prompt, as ids and text."""
    rendered = tokenizer.apply_chat_template(
        list(messages), tokenize=True, add_generation_prompt=True, return_dict=False, **chat_template_kwargs
    )
    if isinstance(rendered, dict) or hasattr(rendered, "input_ids"):
        rendered = rendered["input_ids"]
    ids = list(rendered)
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    text = tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=True, **chat_template_kwargs
    )
    return [int(t) for t in ids], str(text)


@dataclass
class _Episode:
    messages: list[dict[str, Any]]
    prompt_ids: list[int]
    prompt_text: str
    session: SearchSession


def run_search_episode(
    generator: TextGenerator,
    tokenizer: Any,
    messages: Sequence[dict[str, Any]],
    search_client: Any,
    config: SearchEnvConfig,
    *,
    max_response_tokens: int = DEFAULT_MAX_RESPONSE_TOKENS,
) -> Trajectory:
    """Run one episode (see :func:`run_search_episodes`)."""
    return run_search_episodes(
        generator, tokenizer, [messages], search_client, config, max_response_tokens=max_response_tokens
    )[0]


def run_search_episodes(
    generator: TextGenerator,
    tokenizer: Any,
    messages_list: Sequence[Sequence[dict[str, Any]]],
    search_client: Any,
    config: SearchEnvConfig,
    *,
    batch_size: int = 8,
    max_response_tokens: int = DEFAULT_MAX_RESPONSE_TOKENS,
) -> list[Trajectory]:
    """Run many episodes, ``batch_size`` at a time, turn by turn.

    Each turn makes one generate call for every episode still generating (``generate_batch``
    when the generator has it, e.g. :class:`HFGenerator` with left padding) and one batched
    search for every episode that asked for one. Retrieval failures become observations; a
    generator failure (:class:`GenerationError`) propagates.

    Args:
        generator: the model (:class:`TextGenerator`).
        tokenizer: the model's tokenizer (chat template, token budget, masks).
        messages_list: chat messages per episode (``config.system_prompt`` applies).
        search_client: ``search(queries, topk) -> list[SearchOutcome]``.
        config: the env settings.
        batch_size: episodes generated together.
        max_response_tokens: response budget per episode (generated + observation tokens).

    Returns:
        One :class:`Trajectory` per input, in order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    trajectories: list[Trajectory] = []
    for chunk in _chunks(list(messages_list), batch_size):
        episodes = [_start(tokenizer, m, config, max_response_tokens) for m in chunk]
        while True:
            generating = [e for e in episodes if e.session.state is AgentState.GENERATING]
            if generating:
                _generate_turn(generator, tokenizer, generating)
            searching = [e for e in episodes if e.session.state is AgentState.SEARCHING]
            if searching:
                _search_turn(search_client, config.topk, searching)
            if all(e.session.done for e in episodes):
                break
        trajectories.extend(_trajectory(e) for e in episodes)
    return trajectories


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _start(
    tokenizer: Any, messages: Sequence[dict[str, Any]], config: SearchEnvConfig, budget: int
) -> _Episode:
    msgs = apply_system_prompt(messages, config.system_prompt)
    prompt_ids, prompt_text = render_prompt(tokenizer, msgs)
    return _Episode(msgs, prompt_ids, prompt_text, SearchSession(tokenizer, config, response_budget=budget))


def _generate_turn(generator: TextGenerator, tokenizer: Any, episodes: list[_Episode]) -> None:
    requests = [e.session.next_request() for e in episodes]
    if generator.token_in:
        prompts: list[Any] = [e.prompt_ids + e.session.response_ids for e in episodes]
    else:
        prompts = [e.prompt_text + e.session.response_text(skip_special_tokens=False) for e in episodes]
    batch = getattr(generator, "generate_batch", None)
    if batch is not None and len(episodes) > 1:
        results: list[GenerationResult] = batch(prompts, [r.max_tokens for r in requests], STOP_STRINGS)
    else:
        results = [
            generator.generate(p, r.max_tokens, r.stop, messages=_chat_so_far(e))
            for p, r, e in zip(prompts, requests, episodes, strict=True)
        ]
    for episode, result in zip(episodes, results, strict=True):
        ids = result.token_ids
        if ids is None:  # text-out generators: tokenise the new text once
            ids = tokenizer.encode(result.text, add_special_tokens=False)
        logprobs = (
            result.logprobs if result.logprobs is not None and len(result.logprobs) == len(ids) else None
        )
        episode.session.add_generation(ids, logprobs, truncated=result.finish_reason == "length")


def _chat_so_far(episode: _Episode) -> list[dict[str, Any]]:
    """Messages plus the partial assistant turn (for chat-style endpoints)."""
    if not episode.session.response_ids:
        return list(episode.messages)
    return [*episode.messages, {"role": "assistant", "content": episode.session.response_text()}]


def _search_turn(search_client: Any, topk: int, episodes: list[_Episode]) -> None:
    results = search_many(search_client, [e.session.pending_query for e in episodes], topk)
    for episode, result in zip(episodes, results, strict=True):
        episode.session.add_search_result(result.hits, result.error, result.latency_s, result.cached)


def _trajectory(episode: _Episode) -> Trajectory:
    session = episode.session
    text = session.response_text(skip_special_tokens=True)
    check = validate_format(text)
    return Trajectory(
        messages=episode.messages,
        prompt_text=episode.prompt_text,
        response_text=text,
        turns=list(session.turns),
        answer=extract_answer(text),
        stop_reason=session.stop_reason.value if session.stop_reason else "unknown",
        stats=session.stats(),
        format_ok=check.ok,
        format_reason=check.reason,
        response_ids=list(session.response_ids),
        response_mask=list(session.response_mask),
    )


def format_trajectory(trajectory: Trajectory) -> str:
    """Plain text for a person: the question, every turn, the observations, the answer, counters."""
    lines: list[str] = []
    question = next((m.get("content") for m in reversed(trajectory.messages) if m.get("role") == "user"), "")
    lines.append(f"Question: {question}")
    for turn in trajectory.turns:
        lines.append("")
        lines.append(f"--- turn {turn.index + 1} ({turn.num_generated_tokens} tokens, {turn.finish}) ---")
        lines.append(turn.generated_text.strip())
        if turn.query is not None:
            status = f"failed: {turn.error}" if turn.error else f"{turn.latency_s * 1000:.0f} ms"
            lines.append(f"[search] {turn.query!r} ({status})")
        if turn.observation is not None:
            lines.append(turn.observation.strip())
        if turn.invalid:
            lines.append(f"[invalid] {', '.join(turn.invalid)}")
    lines.append("")
    lines.append(f"Answer: {trajectory.answer if trajectory.answer is not None else '(none)'}")
    stats = trajectory.stats
    lines.append(
        f"Stopped: {trajectory.stop_reason}; searches={stats['num_searches']} turns={stats['num_turns']} "
        f"invalid={stats['num_invalid_actions']} retrieval_errors={stats['num_retrieval_errors']} "
        f"format={'ok' if trajectory.format_ok else trajectory.format_reason}"
    )
    return "\n".join(lines)
