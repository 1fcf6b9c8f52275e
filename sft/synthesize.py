"""Trajectory synthesis for SFT: a teacher solves RAMP / QA rows with the search tool; the
trajectories whose answers are right are kept. This module is the public face of
:mod:`masksearch.sft.synthesis` (one job per module there) and the teachers in
:mod:`masksearch.sft.teachers`.

Three teachers (``SynthesisConfig.mode``):

* ``agents``: an LLM **planner** splits the question (or the masked passage) into sub-questions;
  for each one the **query rewriter** writes a search query, the retriever runs it, and the
  **observer** reads the results and either gives the answer or names the next need (bounded
  by ``max_turns``).
* ``rules``: the same three roles as deterministic rules over our own retriever (no endpoint;
  :mod:`masksearch.sft.teachers.rules`): one sub-question per mask, keyword queries, a fill
  accepted only when the observation contains the gold span.
* ``policy`` (self-evolving rounds): the endpoint serves a trained search agent, run in the
  search environment exactly as in evaluation; ``samples_per_item`` trajectories per row.

Every way, the turns go through the env's own :class:`~masksearch.env.session.SearchSession`
(the student's tokenizer, :class:`~masksearch.env.config.SearchEnvConfig`'s settings, turn and
length budgets), so observations are byte-for-byte what RL rollouts contain
(``\\n\\n<information>Doc 1(Title: …) …</information>\\n\\n``).

Filter: the response must pass :func:`masksearch.core.grammar.validate_format` and the training
reward (``acc`` of :func:`masksearch.rewards.compute_score` with ``answer_reward=answer_check``:
for RAMP every span right).

Output folder::

    kept.jsonl      one record per kept trajectory (prompt, segments, response, answer, …)
    rejected.jsonl  one record per rejected item, ``reason`` = the teacher's reason (rules: "fill
                    not found in observations"), the grammar's reason, "wrong answer", or
                    "endpoint failed" (``detail`` says more)
    cache/          teacher calls (see ``endpoint``)
    report.json     items, kept share (also by mask count), mean searches, rejection reasons

Resume: items already in ``kept.jsonl``/``rejected.jsonl`` are skipped; items recorded as
"endpoint failed" are dropped from ``rejected.jsonl`` and run again (``retry_failed``), so an
interrupted or failed run loses nothing.
"""

from __future__ import annotations

from masksearch.sft.synthesis.config import (
    ENDPOINT_FAILED,
    FILL_NOT_FOUND,
    KEPT_FILE,
    REJECTED_FILE,
    REPORT_FILE,
    WRONG_ANSWER,
    SynthesisConfig,
)
from masksearch.sft.synthesis.items import Episode, SynthesisItem, load_items
from masksearch.sft.synthesis.judging import failed_record, judge_episode, segments_of
from masksearch.sft.synthesis.report import build_report
from masksearch.sft.synthesis.resume import read_records
from masksearch.sft.synthesis.run import synthesize
from masksearch.sft.teachers.agents import MultiAgentTeacher
from masksearch.sft.teachers.policy import PolicyTeacher
from masksearch.sft.teachers.rules import RulesTeacher

__all__ = [
    "ENDPOINT_FAILED",
    "FILL_NOT_FOUND",
    "KEPT_FILE",
    "REJECTED_FILE",
    "REPORT_FILE",
    "WRONG_ANSWER",
    "Episode",
    "MultiAgentTeacher",
    "PolicyTeacher",
    "RulesTeacher",
    "SynthesisConfig",
    "SynthesisItem",
    "build_report",
    "failed_record",
    "judge_episode",
    "load_items",
    "read_records",
    "segments_of",
    "synthesize",
]
