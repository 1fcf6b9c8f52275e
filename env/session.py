"""The turn logic of the search environment, shared by the verl agent loop and the standalone runner.

A :class:`SearchSession` holds one episode's response tokens and decides everything that is not
I/O: where a generated turn ends (stop strings, EOS, the length budget), which action it asks for
(search / answer / nothing; parsed with :mod:`masksearch.core.grammar`), what counts as an
invalid action, how an observation is tokenised and truncated, and when the episode ends (one
function, :meth:`SearchSession._check_termination`). Drivers only move tokens in and out::

    session = SearchSession(tokenizer, config, response_budget=...)
    state = AgentState.GENERATING
    while state is not AgentState.TERMINATED:
        if state is AgentState.GENERATING:
            req = session.next_request()                   # max_tokens + stop strings
            out = generate(prompt_ids + session.response_ids, req)
            state = session.add_generation(out.token_ids, out.log_probs)
        elif state is AgentState.SEARCHING:
            res = search(session.pending_query)            # never raises
            state = session.add_search_result(res.hits, res.error, res.latency_s, res.cached)

Response layout (``response_mask`` 1 = model token, 0 = environment token)::

    <think>…</think><search>q</search> | \\n\\n<information>Doc 1(Title: …) …</information>\\n\\n | <think>…<answer>a</answer>
    1 1 1 … 1 1 1 1 1 1 1 1 1 1 1 1 1 1 | 0 0 0 … 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 | 1 1 1 …

Observation tokens are tokenised once, on their own, and appended: the context is never
re-tokenised, so the ids the model saw are exactly the ids that are trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from masksearch.core.grammar import (
    ANSWER,
    ANSWER_STOP,
    INFORMATION,
    SEARCH,
    SEARCH_STOP,
    extract_answer,
    extract_search_query,
)
from masksearch.core.logs import module_logger
from masksearch.engine.stops import find_stop_cut
from masksearch.env.config import SearchEnvConfig

logger = module_logger(__name__)

__all__ = [
    "OBS_PREFIX",
    "OBS_SUFFIX",
    "STATS_KEYS",
    "STOP_STRINGS",
    "AgentState",
    "GenerationRequest",
    "SearchSession",
    "StopReason",
    "TurnRecord",
]

#: Stop strings sent with every generation request (the backend should honour them; if it does
#: not, :func:`~masksearch.engine.stops.find_stop_cut` cuts the turn after the first one).
STOP_STRINGS: tuple[str, ...] = (SEARCH_STOP, ANSWER_STOP)
#: Text around an observation, as Search-R1 writes it.
OBS_PREFIX = "\n\n" + INFORMATION.open
OBS_SUFFIX = INFORMATION.close + "\n\n"
#: Per-sample statistics; every episode reports exactly these keys, whatever way it ends.
STATS_KEYS: tuple[str, ...] = (
    "num_searches",
    "num_turns",
    "num_invalid_actions",
    "num_retrieval_errors",
    "num_cached_searches",
    "retrieval_latency_s",
    "hit_turn_budget",
    "hit_length_budget",
)
_MAX_ERROR_CHARS = 300
_EMPTY_QUERY_FEEDBACK = f"No search was run: put a non-empty query between {SEARCH.open} and {SEARCH.close}."
_NO_RESULTS = "No results found."


class AgentState(Enum):
    """States of an episode: the agent loop has one ``_handle_*_state`` per non-final state."""

    PENDING = "pending"  # prompt not built yet
    GENERATING = "generating"  # waiting for a model turn
    SEARCHING = "searching"  # waiting for the result of ``pending_query``
    TERMINATED = "terminated"


class StopReason(str, Enum):
    """Why an episode ended."""

    ANSWERED = "answered"  # a complete <answer>…</answer>
    NO_ACTION = "no_action"  # the model ended a turn (EOS) with neither a search nor an answer
    LENGTH_BUDGET = "length_budget"  # the response-length budget is used up
    TURN_BUDGET = "turn_budget"  # max_turns model turns without an answer
    ABORTED = "aborted"  # the rollout backend aborted the request


class Finish(str, Enum):
    """Why one generated turn ended."""

    STOP = "stop"  # a stop string (</search> or </answer>)
    EOS = "eos"  # end of sequence (or the backend stopped for a reason of its own)
    LENGTH = "length"  # max_tokens, i.e. the rest of the response budget


@dataclass(frozen=True)
class GenerationRequest:
    """What the next generation call must be given: at most ``max_tokens`` new tokens, ``stop``."""

    max_tokens: int
    stop: tuple[str, ...] = STOP_STRINGS


@dataclass
class TurnRecord:
    """One model turn and the environment's reply to it.

    Attributes:
        index: 0-based turn number.
        generated_text: the model's text of this turn (special tokens skipped), after cutting.
        num_generated_tokens: tokens kept from this turn (mask 1).
        finish: ``stop`` / ``eos`` / ``length`` (see :class:`Finish`).
        query: the search run after this turn (``None`` when none was run).
        answer: the answer given in this turn, if any.
        observation: the observation text appended after this turn (``None`` when none).
        num_observation_tokens: tokens of that observation (mask 0).
        error: the retrieval error, if the search failed.
        latency_s: retrieval latency reported for the search.
        invalid: reasons this turn counted as invalid actions (one entry per invalid action).
        observation_truncated: the observation was cut (``max_obs_tokens`` or the budget).
    """

    index: int
    generated_text: str
    num_generated_tokens: int
    finish: str
    query: str | None = None
    answer: str | None = None
    observation: str | None = None
    num_observation_tokens: int = 0
    error: str | None = None
    latency_s: float = 0.0
    invalid: list[str] = field(default_factory=list)
    observation_truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "generated_text": self.generated_text,
            "num_generated_tokens": self.num_generated_tokens,
            "finish": self.finish,
            "query": self.query,
            "answer": self.answer,
            "observation": self.observation,
            "num_observation_tokens": self.num_observation_tokens,
            "error": self.error,
            "latency_s": self.latency_s,
            "invalid": list(self.invalid),
            "observation_truncated": self.observation_truncated,
        }


class SearchSession:
    """One episode's state and turn logic (no I/O).

    Args:
        tokenizer: the policy's tokenizer (``encode``/``decode``, ``eos_token_id``).
        config: the environment settings (``max_turns``, ``topk``, ``max_obs_tokens``).
        response_budget: most response tokens (generated + observation) of the episode.
        formatter: ``hits -> str`` rendering retrieved documents; defaults to
            ``masksearch.search_tool.observation.format_observation`` (Search-R1's ``Doc i(Title: …)``).
        eos_token_ids: ids that end a turn; defaults to the tokenizer's EOS id.

    Raises:
        ValueError: ``response_budget < 1``, or ``max_obs_tokens`` too small to hold the
            ``<information>`` wrapper plus one token.
    """

    def __init__(
        self,
        tokenizer: Any,
        config: SearchEnvConfig,
        response_budget: int,
        *,
        formatter: Callable[[list[Any]], str] | None = None,
        eos_token_ids: Sequence[int] | None = None,
    ):
        if response_budget < 1:
            raise ValueError(f"response_budget must be >= 1, got {response_budget}")
        self.tokenizer = tokenizer
        self.config = config
        self.response_budget = int(response_budget)
        self._formatter = formatter
        if eos_token_ids is None:
            eos = getattr(tokenizer, "eos_token_id", None)
            eos_token_ids = [] if eos is None else [eos]
        self.eos_token_ids = frozenset(int(t) for t in eos_token_ids)
        self._obs_prefix_ids = self._encode(OBS_PREFIX)
        self._obs_suffix_ids = self._encode(OBS_SUFFIX)
        wrapper = len(self._obs_prefix_ids) + len(self._obs_suffix_ids)
        if config.max_obs_tokens < wrapper + 1:
            raise ValueError(
                f"max_obs_tokens={config.max_obs_tokens} cannot hold the observation wrapper "
                f"({wrapper} tokens) plus one token of text"
            )

        self.state = AgentState.GENERATING
        self.stop_reason: StopReason | None = None
        self.pending_query: str | None = None
        self.response_ids: list[int] = []
        self.response_mask: list[int] = []
        self._logprobs: list[float] = []
        self._logprobs_missing = False
        self.turns: list[TurnRecord] = []
        self.num_searches = 0
        self.num_invalid_actions = 0
        self.num_retrieval_errors = 0
        self.num_cached_searches = 0
        self.retrieval_latency_s = 0.0

    # ------------------------------------------------------------------ views
    @property
    def remaining(self) -> int:
        """Response tokens still available."""
        return self.response_budget - len(self.response_ids)

    @property
    def done(self) -> bool:
        return self.state is AgentState.TERMINATED

    @property
    def num_model_turns(self) -> int:
        return len(self.turns)

    @property
    def num_observations(self) -> int:
        return sum(1 for t in self.turns if t.observation is not None)

    @property
    def response_logprobs(self) -> list[float] | None:
        """Log-probs aligned with ``response_mask`` (0.0 on observation tokens), or ``None`` if a
        generation came back without log-probs."""
        return None if self._logprobs_missing else list(self._logprobs)

    def response_text(self, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(self.response_ids, skip_special_tokens=skip_special_tokens)

    def stats(self) -> dict[str, Any]:
        """Per-sample statistics with exactly the keys of :data:`STATS_KEYS`."""
        return {
            "num_searches": int(self.num_searches),
            "num_turns": int(self.num_model_turns),
            "num_invalid_actions": int(self.num_invalid_actions),
            "num_retrieval_errors": int(self.num_retrieval_errors),
            "num_cached_searches": int(self.num_cached_searches),
            "retrieval_latency_s": float(self.retrieval_latency_s),
            "hit_turn_budget": self.stop_reason is StopReason.TURN_BUDGET,
            "hit_length_budget": self.stop_reason is StopReason.LENGTH_BUDGET,
        }

    def next_request(self) -> GenerationRequest:
        """Parameters of the next generation call (only valid in ``GENERATING``)."""
        self._expect(AgentState.GENERATING)
        return GenerationRequest(max_tokens=self.remaining)

    # ------------------------------------------------------------------ steps
    def add_generation(
        self,
        token_ids: Sequence[int],
        logprobs: Sequence[float] | None = None,
        *,
        truncated: bool = False,
        aborted: bool = False,
    ) -> AgentState:
        """Record one model turn and decide what comes next.

        The ids are clipped to the remaining budget, cut after the first stop string or EOS, and
        appended with mask 1; the turn's text is parsed with the grammar.

        Args:
            token_ids: ids generated in this turn.
            logprobs: one log-prob per id, or ``None`` when the backend returned none.
            truncated: the backend reports it stopped on ``max_tokens``.
            aborted: the backend aborted the request; the episode ends.

        Returns:
            ``SEARCHING`` (run ``pending_query``), ``GENERATING`` (an invalid search got a
            feedback observation), or ``TERMINATED``.
        """
        self._expect(AgentState.GENERATING)
        ids = [int(t) for t in token_ids]
        lps = None if logprobs is None else [float(x) for x in logprobs]
        if lps is not None and len(lps) != len(ids):
            raise ValueError(f"got {len(lps)} log-probs for {len(ids)} generated tokens")
        budget = self.remaining
        over_budget = len(ids) > budget
        ids = ids[:budget]
        n_keep, stop, eos = find_stop_cut(self.tokenizer, ids, STOP_STRINGS, self.eos_token_ids)
        if n_keep < len(ids):
            logger.debug("cut a turn from %d to %d tokens (stop=%r, eos=%s)", len(ids), n_keep, stop, eos)
        ids = ids[:n_keep]
        if stop is not None:
            finish = Finish.STOP
        elif eos:
            finish = Finish.EOS
        elif over_budget or truncated or len(ids) >= budget:
            finish = Finish.LENGTH
        else:  # the backend ended the turn on its own (e.g. another end-of-turn token)
            finish = Finish.EOS

        self.response_ids.extend(ids)
        self.response_mask.extend([1] * len(ids))
        if lps is None:
            self._logprobs_missing = True
            self._logprobs.extend([0.0] * len(ids))
        else:
            self._logprobs.extend(lps[: len(ids)])

        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        turn = TurnRecord(
            index=len(self.turns), generated_text=text, num_generated_tokens=len(ids), finish=finish.value
        )
        self.turns.append(turn)

        answered = False
        search_attempt = False
        query: str | None = None
        if stop == ANSWER_STOP:
            turn.answer = extract_answer(text)
            answered = turn.answer is not None
            if answered:
                tail = text[text.rfind(ANSWER.close) + len(ANSWER.close) :]
                if tail.strip():
                    self._invalid(turn, "text_after_answer")
            else:
                self._invalid(turn, "malformed_answer")
        elif stop == SEARCH_STOP:
            search_attempt = True
            query = extract_search_query(text)
            extra = text.count(SEARCH.open) - 1
            for _ in range(max(0, extra)):
                self._invalid(turn, "extra_search")  # only the last query of a turn is run
            if not query:
                self._invalid(turn, "empty_query")
        elif finish is Finish.EOS:
            self._invalid(turn, "no_action")

        reason = self._check_termination(
            answered=answered,
            no_action=not answered and not search_attempt and finish is not Finish.LENGTH,
            length_hit=finish is Finish.LENGTH,
            aborted=aborted,
        )
        if reason is not None:
            return self._terminate(reason)
        if query:
            self.pending_query = query
            self.state = AgentState.SEARCHING
            return self.state
        # A search with an empty or malformed query: say so in an observation and go on.
        self._append_observation(turn, _EMPTY_QUERY_FEEDBACK)
        return self._after_observation()

    def add_search_result(
        self,
        hits: Sequence[Any] | None,
        error: str | None,
        latency_s: float = 0.0,
        cached: bool = False,
    ) -> AgentState:
        """Append the observation for ``pending_query`` (results, or ``Search failed: …``).

        ``cached``: the client answered from its cache without asking the retriever; counted in
        ``num_cached_searches`` so that the retrieval error rate is taken over the searches that
        reached the retriever (a dead server must not look half-alive behind a warm cache).
        """
        self._expect(AgentState.SEARCHING)
        turn = self.turns[-1]
        turn.query = self.pending_query
        self.pending_query = None
        self.num_searches += 1
        self.num_cached_searches += int(bool(cached) and not error)
        latency = float(latency_s or 0.0)
        turn.latency_s = latency
        self.retrieval_latency_s += latency
        if error:
            self.num_retrieval_errors += 1
            turn.error = " ".join(str(error).split())[:_MAX_ERROR_CHARS]
            body = f"Search failed: {turn.error}"
        elif not hits:
            body = _NO_RESULTS
        else:
            body = self._format(list(hits))
        self._append_observation(turn, body)
        return self._after_observation()

    # ------------------------------------------------------------------ internals
    def _check_termination(
        self,
        *,
        answered: bool = False,
        no_action: bool = False,
        length_hit: bool = False,
        aborted: bool = False,
    ) -> StopReason | None:
        """Every way an episode ends, in priority order; ``None`` means go on."""
        if aborted:
            return StopReason.ABORTED
        if answered:
            return StopReason.ANSWERED
        if no_action:
            return StopReason.NO_ACTION
        if length_hit or self.remaining <= 0:
            return StopReason.LENGTH_BUDGET
        if self.num_model_turns >= self.config.max_turns:
            return StopReason.TURN_BUDGET
        return None

    def _after_observation(self) -> AgentState:
        reason = self._check_termination()
        if reason is not None:
            return self._terminate(reason)
        self.state = AgentState.GENERATING
        return self.state

    def _terminate(self, reason: StopReason) -> AgentState:
        self.stop_reason = reason
        self.pending_query = None
        self.state = AgentState.TERMINATED
        return self.state

    def _invalid(self, turn: TurnRecord, reason: str) -> None:
        turn.invalid.append(reason)
        self.num_invalid_actions += 1

    def _append_observation(self, turn: TurnRecord, body: str) -> None:
        obs_ids, truncated = self._observation_ids(body, min(self.config.max_obs_tokens, self.remaining))
        self.response_ids.extend(obs_ids)
        self.response_mask.extend([0] * len(obs_ids))
        self._logprobs.extend([0.0] * len(obs_ids))
        turn.observation = self.tokenizer.decode(obs_ids, skip_special_tokens=False)
        turn.num_observation_tokens = len(obs_ids)
        turn.observation_truncated = truncated

    def _observation_ids(self, body: str, limit: int) -> tuple[list[int], bool]:
        """``OBS_PREFIX + body + OBS_SUFFIX`` as ids, at most ``limit`` of them.

        The body is tokenised once and cut at a token boundary (never inside a UTF-8 character)
        so that the closing tag is kept; only when ``limit`` cannot even hold the wrapper (the
        very end of the budget) is the block itself cut.
        """
        body_ids = self._encode(body)
        prefix, suffix = self._obs_prefix_ids, self._obs_suffix_ids
        if len(prefix) + len(body_ids) + len(suffix) <= limit:
            return prefix + body_ids + suffix, False
        room = limit - len(prefix) - len(suffix)
        if room < 0:
            return (prefix + body_ids + suffix)[: max(0, limit)], True
        kept = body_ids[:room]
        while kept and self.tokenizer.decode(kept[-4:], skip_special_tokens=False).endswith("\ufffd"):
            kept = kept[:-1]  # do not leave half a multi-byte character before the closing tag
        return prefix + kept + suffix, True

    def _format(self, hits: list[Any]) -> str:
        if self._formatter is None:
            from masksearch.search_tool.observation import format_observation

            self._formatter = format_observation
        return self._formatter(hits).strip()  # Search-R1 strips the passages before wrapping them

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _expect(self, state: AgentState) -> None:
        if self.state is not state:
            raise RuntimeError(f"session is {self.state.value}, expected {state.value}")
