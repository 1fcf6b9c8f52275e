"""The LLM multi-agent teacher: planner → (rewriter → retriever → observer)* → answer."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from masksearch.env.session import AgentState, SearchSession
from masksearch.sft.agents import (
    Task,
    observer_messages,
    parse_observer,
    parse_plan,
    parse_query,
    planner_messages,
    rewriter_messages,
)
from masksearch.sft.endpoint import ChatEndpoint
from masksearch.sft.synthesis.config import SynthesisConfig
from masksearch.sft.synthesis.items import Episode, SynthesisItem
from masksearch.sft.synthesis.search import SearchFn

__all__ = ["MultiAgentTeacher", "answer_text"]


def answer_text(task: Task, lines: list[str]) -> str:
    """RAMP: one fill per line (as the RAMP prompt asks); QA: `` answer `` (as the QA example)."""
    if task.kind == "ramp":
        return "\n" + "\n".join(lines) + "\n"
    return f" {' '.join(lines)} "


class MultiAgentTeacher:
    """Planner → (rewriter → retriever → observer)* → answer, driven through a ``SearchSession``."""

    def __init__(self, endpoint: ChatEndpoint, tokenizer: Any, search: SearchFn, config: SynthesisConfig):
        self.endpoint = endpoint
        self.tokenizer = tokenizer
        self.search = search
        self.config = config
        self.env_config = config.env_config()

    def _turn(self, session: SearchSession, text: str) -> AgentState:
        return session.add_generation(self.tokenizer.encode(text, add_special_tokens=False))

    def run(self, item: SynthesisItem) -> Episode:
        cfg = self.config
        task = item.task
        plan = self.endpoint.chat(
            planner_messages(task, cfg.max_sub_questions), lambda t: parse_plan(t, cfg.max_sub_questions)
        )
        trace: dict[str, Any] = {"plan": asdict(plan), "steps": []}
        pending = list(plan.sub_questions)
        notes: list[str] = []
        listing = " ".join(f"({i}) {q}" for i, q in enumerate(pending, start=1))
        think = f"{plan.thought} Plan: {listing}".strip() if plan.thought else f"I need to find: {listing}"
        session = SearchSession(self.tokenizer, self.env_config, response_budget=cfg.max_response_tokens)
        while session.state is AgentState.GENERATING:
            need = pending.pop(0) if pending else f"whatever is still missing to solve: {task.text}"
            query = self.endpoint.chat(rewriter_messages(task, need, notes), parse_query)
            if (
                self._turn(session, f"<think>{think}</think>\n<search>{query}</search>")
                is not AgentState.SEARCHING
            ):
                break
            result = self.search(session.pending_query or query)
            state = session.add_search_result(result.hits, result.error, result.latency_s, result.cached)
            step: dict[str, Any] = {"need": need, "query": query, "error": result.error}
            trace["steps"].append(step)
            if state is not AgentState.GENERATING:
                break  # turn or length budget
            last = session.num_model_turns + 1 >= self.env_config.max_turns
            reply = self.endpoint.chat(
                observer_messages(
                    task, need, query, session.turns[-1].observation or "", notes, pending, last_step=last
                ),
                parse_observer,
            )
            step.update(note=reply.note, answer=reply.answer, next=reply.next_need)
            if reply.note:
                notes.append(reply.note)
            if reply.answer is not None:
                note = reply.note or "I have everything I need."
                self._turn(
                    session,
                    f"<think>{note}</think>\n<answer>{answer_text(task, reply.answer_lines)}</answer>",
                )
                break
            if reply.next_need and (not pending or pending[0] != reply.next_need):
                pending.insert(0, reply.next_need)
            think = (reply.note or "The results do not settle it yet.") + (
                f" Next I need: {pending[0]}" if pending else ""
            )
        stop = session.stop_reason.value if session.stop_reason else "unfinished"
        return Episode(turns=list(session.turns), stop_reason=stop, trace=trace)
