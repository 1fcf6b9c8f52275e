"""Trajectory synthesis for SFT: a teacher solves RAMP / QA rows with the search tool; the
trajectories whose answers are right are kept.

Two teachers:

* ``agents`` (round 1): a **planner** splits the question (or the masked passage) into
  sub-questions; for each one the **query rewriter** writes a search query, the retriever runs it,
  and the **observer** reads the results and either gives the answer or names the next need
  (bounded by ``max_turns``). Their texts become the student's turns
  ``<think>…</think>\\n<search>…</search>`` and, at the end, ``<think>…</think>\\n<answer>…</answer>``.
* ``policy`` (self-evolving rounds): the endpoint serves a trained search agent, which is run
  in the search environment exactly as in evaluation (``masksearch.env.standalone``).

Either way the turns go through the env's own :class:`~masksearch.env.session.SearchSession`
(the student's tokenizer, ``max_obs_tokens``, turn and length budgets), so observations are
byte-for-byte what RL rollouts contain (``\\n\\n<information>Doc 1(Title: …) …</information>\\n\\n``).

Filter: the response must pass :func:`masksearch.core.grammar.validate_format` and the answer
check (``acc`` of :func:`masksearch.rewards.compute_score` with ``answer_reward=answer_check``:
exact match for QA; for RAMP every span right, via ``score_ramp``).

Output folder::

    kept.jsonl      one record per kept trajectory (prompt, segments, response, answer, …)
    rejected.jsonl  one record per rejected item, ``reason`` = the grammar's reason,
                    "wrong answer", or "endpoint failed" (``detail`` says more)
    cache/          teacher calls (see ``endpoint``)
    report.json     items, kept share, mean searches, rejection reasons, endpoint counters

Resume: items already in ``kept.jsonl``/``rejected.jsonl`` are skipped; items recorded as
"endpoint failed" are dropped from ``rejected.jsonl`` and run again (``retry_failed``), so an
interrupted or failed run loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from masksearch.core.grammar import validate_format
from masksearch.env.config import SearchEnvConfig
from masksearch.env.session import AgentState, SearchSession, TurnRecord
from masksearch.sft.agents import (
    Task,
    observer_messages,
    parse_observer,
    parse_plan,
    parse_query,
    planner_messages,
    rewriter_messages,
)
from masksearch.sft.endpoint import (
    CallStats,
    ChatEndpoint,
    DiskCache,
    EndpointError,
    ResilientGenerator,
    RetryPolicy,
)

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("MASKSEARCH_LOGGING_LEVEL", "WARN"))

__all__ = [
    "ENDPOINT_FAILED",
    "KEPT_FILE",
    "REJECTED_FILE",
    "REPORT_FILE",
    "WRONG_ANSWER",
    "MultiAgentTeacher",
    "PolicyTeacher",
    "SynthesisConfig",
    "SynthesisItem",
    "build_report",
    "load_items",
    "read_records",
    "segments_of",
    "synthesize",
]

KEPT_FILE = "kept.jsonl"
REJECTED_FILE = "rejected.jsonl"
REPORT_FILE = "report.json"
CACHE_DIR = "cache"
WRONG_ANSWER = "wrong answer"
ENDPOINT_FAILED = "endpoint failed"


@dataclass(frozen=True)
class SynthesisConfig:
    """Settings of one synthesis run.

    Attributes:
        mode: ``agents`` (planner / rewriter / observer) or ``policy`` (a served search agent).
        max_turns: model turns per trajectory (searches + the answer turn), as the env counts them.
        max_sub_questions: planner's limit.
        topk: passages per search.
        max_obs_tokens: observation budget (the env's ``max_obs_tokens``).
        max_response_tokens: response budget (generated + observation tokens).
        answer_check: answer reward name for the filter (``em``, ``f1``, ``recall``, ``llm_judge``…);
            a trajectory is kept when ``acc == 1`` (every RAMP span right).
        concurrency: items in flight at once.
        limit: only the first ``limit`` rows.
        temperature, max_tokens: teacher sampling (agents: per call; policy: per turn).
        api: ``completions`` or ``chat`` for the policy teacher (``OpenAIGenerator``).
        retry: retries and backoff for teacher calls.
        retry_failed: on resume, run "endpoint failed" items again.
        cache: keep teacher calls on disk under ``out/cache``.
    """

    mode: str = "agents"
    max_turns: int = 5
    max_sub_questions: int = 4
    topk: int = 3
    max_obs_tokens: int = 512
    max_response_tokens: int = 4096
    answer_check: str = "em"
    concurrency: int = 4
    limit: int | None = None
    temperature: float = 0.7
    max_tokens: int = 512
    api: str = "completions"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retry_failed: bool = True
    cache: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("agents", "policy"):
            raise ValueError(f"mode must be 'agents' or 'policy', got {self.mode!r}")
        if self.max_turns < 2:
            raise ValueError(f"max_turns must be >= 2 (one search and the answer), got {self.max_turns}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")

    def env_config(self) -> SearchEnvConfig:
        return SearchEnvConfig(max_turns=self.max_turns, topk=self.topk, max_obs_tokens=self.max_obs_tokens)


@dataclass(frozen=True)
class SynthesisItem:
    """One input row: its RL prompt, ground truth and the text the teacher works on."""

    id: str
    data_source: str
    kind: str
    prompt: list[dict[str, str]]
    ground_truth: list[Any]
    extra_info: dict[str, Any]
    task_text: str
    mask_num: int

    @property
    def task(self) -> Task:
        return Task(kind=self.kind, text=self.task_text, mask_num=self.mask_num)  # type: ignore[arg-type]


@dataclass
class Episode:
    """What a teacher produced for one item (before filtering)."""

    turns: list[TurnRecord]
    stop_reason: str
    trace: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ input
def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return value


def _user_text(prompt: list[dict[str, str]]) -> str:
    users = [m.get("content") or "" for m in prompt if m.get("role") == "user"]
    return users[-1] if users else ""


def load_items(path: str | os.PathLike, limit: int | None = None) -> list[SynthesisItem]:
    """Rows of a RAMP / QA parquet (``masksearch ramp build`` / ``qa prepare``) as items.

    The item id is the row number plus a hash of prompt and ground truth, so it is stable across
    runs and changes when the row does.

    Raises:
        ValueError: a row without ``prompt`` or ground truth, or a RAMP row without its passage.
    """
    import pyarrow.parquet as pq

    from masksearch.rewards import task_kind

    rows = pq.read_table(path).to_pylist()
    if limit is not None:
        rows = rows[: max(0, int(limit))]
    items = []
    for i, row in enumerate(rows):
        prompt = _plain(row.get("prompt") or [])
        ground_truth = _plain((row.get("reward_model") or {}).get("ground_truth"))
        if not prompt or ground_truth is None:
            raise ValueError(f"{path}: row {i} has no prompt or reward_model.ground_truth")
        if isinstance(ground_truth, str):
            ground_truth = [ground_truth]
        extra = _plain(row.get("extra_info") or {})
        data_source = str(row.get("data_source") or "")
        kind = task_kind(data_source)
        if kind == "ramp":
            text = extra.get("masked_text") or ""
            if not text:
                raise ValueError(f"{path}: RAMP row {i} has no extra_info.masked_text")
            mask_num = int(extra.get("mask_num") or text.lower().count("[mask]"))
        else:
            text = extra.get("question") or _user_text(prompt)
            mask_num = 0
        digest = hashlib.sha1(
            json.dumps([prompt, ground_truth], sort_keys=True, ensure_ascii=False).encode("utf-8")
        ).hexdigest()[:10]
        items.append(
            SynthesisItem(
                id=f"{i:06d}-{digest}",
                data_source=data_source,
                kind=kind,
                prompt=prompt,
                ground_truth=list(ground_truth),
                extra_info=extra,
                task_text=text,
                mask_num=mask_num,
            )
        )
    return items


# ---------------------------------------------------------------------------------- teachers
class _LockedTokenizer:
    """Fast tokenizers are not safe to call from several threads at once; serialise them."""

    _LOCKED = frozenset({"encode", "decode", "apply_chat_template", "__call__", "convert_ids_to_tokens"})

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._tokenizer, name)
        if name in self._LOCKED and callable(attr):

            def locked(*args: Any, **kwargs: Any) -> Any:
                with self._lock:
                    return attr(*args, **kwargs)

            return locked
        return attr


class _SearchFn:
    """``query -> SearchResult`` over a search client, never raising; in-process indexes locked."""

    def __init__(self, client: Any, topk: int, serialise: bool):
        self.client = client
        self.topk = topk
        self._lock = threading.Lock() if serialise else None

    def search(self, queries: list[str], topk: int) -> Any:  # the client protocol, for the env runner
        if self._lock is None:
            return self.client.search(queries, topk)
        with self._lock:
            return self.client.search(queries, topk)

    def __call__(self, query: str) -> Any:
        from masksearch.env.retrieval import search_many

        return search_many(self, [query], self.topk)[0]


class MultiAgentTeacher:
    """Planner → (rewriter → retriever → observer)* → answer, driven through a ``SearchSession``."""

    def __init__(self, endpoint: ChatEndpoint, tokenizer: Any, search: _SearchFn, config: SynthesisConfig):
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
            state = session.add_search_result(result.hits, result.error, result.latency_s)
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
                    f"<think>{note}</think>\n<answer>{_answer_text(task, reply.answer_lines)}</answer>",
                )
                break
            if reply.next_need and (not pending or pending[0] != reply.next_need):
                pending.insert(0, reply.next_need)
            think = (reply.note or "The results do not settle it yet.") + (
                f" Next I need: {pending[0]}" if pending else ""
            )
        stop = session.stop_reason.value if session.stop_reason else "unfinished"
        return Episode(turns=list(session.turns), stop_reason=stop, trace=trace)


def _answer_text(task: Task, lines: list[str]) -> str:
    """RAMP: one fill per line (as the RAMP prompt asks); QA: `` answer `` (as the QA example)."""
    if task.kind == "ramp":
        return "\n" + "\n".join(lines) + "\n"
    return f" {' '.join(lines)} "


class PolicyTeacher:
    """A served search agent run in the search environment (``masksearch.env.standalone``)."""

    def __init__(
        self, generator: ResilientGenerator, tokenizer: Any, search: _SearchFn, config: SynthesisConfig
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


# ---------------------------------------------------------------------------------- records
def segments_of(turns: Iterable[TurnRecord]) -> list[dict[str, str]]:
    """Model turns as ``assistant`` messages and observations as ``tool`` messages, in order."""
    out: list[dict[str, str]] = []
    for turn in turns:
        out.append({"role": "assistant", "content": turn.generated_text})
        if turn.observation is not None:
            out.append({"role": "tool", "content": turn.observation})
    return out


def _base_record(item: SynthesisItem, teacher: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item.id,
        "data_source": item.data_source,
        "kind": item.kind,
        "prompt": item.prompt,
        "ground_truth": item.ground_truth,
        "extra_info": item.extra_info,
        "teacher": teacher,
    }


def judge_episode(
    item: SynthesisItem, episode: Episode, answer_check: str, teacher: dict[str, Any]
) -> dict[str, Any]:
    """The record of one finished episode: kept, or rejected with the grammar's reason / wrong answer."""
    from masksearch.rewards import compute_score

    segments = segments_of(episode.turns)
    response = "".join(s["content"] for s in segments)
    check = validate_format(response)
    score = compute_score(
        item.data_source, response, item.ground_truth, item.extra_info, answer_reward=answer_check
    )
    kept = bool(check.ok) and score["acc"] >= 1.0
    reason = "ok" if kept else (check.reason if not check.ok else WRONG_ANSWER)
    return {
        **_base_record(item, teacher),
        "status": "kept" if kept else "rejected",
        "reason": reason,
        "detail": "" if kept else f"stop={episode.stop_reason} pred={score['pred']!r}",
        "segments": segments,
        "response": response,
        "answer": score["pred"],
        "answer_score": score["answer_score"],
        "num_searches": int(score["num_searches"]),
        "num_turns": len(episode.turns),
        "stop_reason": episode.stop_reason,
        "trace": episode.trace,
    }


def failed_record(item: SynthesisItem, error: BaseException, teacher: dict[str, Any]) -> dict[str, Any]:
    return {
        **_base_record(item, teacher),
        "status": "rejected",
        "reason": ENDPOINT_FAILED,
        "detail": " ".join(str(error).split())[:500],
        "segments": [],
        "response": "",
        "answer": "",
        "answer_score": 0.0,
        "num_searches": 0,
        "num_turns": 0,
        "stop_reason": "failed",
        "trace": {},
    }


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a JSONL file; a torn last line (killed writer) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            logger.warning("%s: skipping an unreadable line (interrupted write?)", path)
    return records


def _rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _prepare_resume(out: Path, retry_failed: bool) -> set[str]:
    """Ids already done; failed records are removed first when they are to be retried."""
    kept = read_records(out / KEPT_FILE)
    rejected = read_records(out / REJECTED_FILE)
    if retry_failed and any(r.get("reason") == ENDPOINT_FAILED for r in rejected):
        rejected = [r for r in rejected if r.get("reason") != ENDPOINT_FAILED]
        _rewrite(out / REJECTED_FILE, rejected)
    elif rejected or kept:
        # rewrite anyway to drop a torn last line left by a killed run
        _rewrite(out / REJECTED_FILE, rejected)
    if kept:
        _rewrite(out / KEPT_FILE, kept)
    return {str(r["id"]) for r in kept + rejected if "id" in r}


# ---------------------------------------------------------------------------------- report
def build_report(out_dir: str | os.PathLike, items: int | None = None, **extra: Any) -> dict[str, Any]:
    """Counts over the records on disk (so a resumed run reports the whole data set).

    ``kept_share`` = kept / processed; ``mean_searches`` over kept trajectories;
    ``mean_searches_all`` over every trajectory the teacher finished (failed items excluded).
    """
    out = Path(out_dir)
    kept = read_records(out / KEPT_FILE)
    rejected = read_records(out / REJECTED_FILE)
    processed = len(kept) + len(rejected)
    finished = kept + [r for r in rejected if r.get("reason") != ENDPOINT_FAILED]
    reasons = Counter(str(r.get("reason")) for r in rejected)
    report: dict[str, Any] = {
        "items": items if items is not None else processed,
        "processed": processed,
        "kept": len(kept),
        "rejected": len(rejected) - reasons.get(ENDPOINT_FAILED, 0),
        "failed": reasons.get(ENDPOINT_FAILED, 0),
        "kept_share": round(len(kept) / processed, 4) if processed else 0.0,
        "mean_searches": round(sum(r["num_searches"] for r in kept) / len(kept), 4) if kept else 0.0,
        "mean_searches_all": (
            round(sum(r["num_searches"] for r in finished) / len(finished), 4) if finished else 0.0
        ),
        "rejection_reasons": dict(reasons.most_common()),
        "by_kind": {
            kind: {
                "kept": sum(1 for r in kept if r.get("kind") == kind),
                "processed": sum(1 for r in kept + rejected if r.get("kind") == kind),
            }
            for kind in sorted({str(r.get("kind")) for r in kept + rejected})
        },
    }
    report.update(extra)
    return report


# ---------------------------------------------------------------------------------- driver
def synthesize(
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    endpoint_url: str,
    model: str,
    search_client: Any,
    tokenizer: Any,
    config: SynthesisConfig | None = None,
    api_key: str | None = None,
    serialise_search: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Synthesise, filter and record trajectories for every row of ``data``; write ``report.json``.

    Args:
        data: RAMP / QA parquet (verl RL schema).
        out_dir: output folder (created; an existing one is resumed).
        endpoint_url: the teacher's OpenAI-compatible server.
        model: the served model name.
        search_client: ``search(queries, topk) -> list[SearchOutcome]`` (``make_search_client``).
        tokenizer: the student's tokenizer (observation budget, turn cutting; as in RL).
        config: settings.
        api_key: bearer token for the endpoint.
        serialise_search: one search at a time (in-process indexes); False for a retrieval server.
        on_record: called with each record after it is written (progress, tests).
        sleep: backoff sleep.

    Returns:
        The report (also written to ``out_dir/report.json``).
    """
    cfg = config or SynthesisConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    items = load_items(data, cfg.limit)
    done = _prepare_resume(out, cfg.retry_failed)
    todo = [item for item in items if item.id not in done]
    logger.info("synthesis: %d items, %d done, %d to run", len(items), len(items) - len(todo), len(todo))

    stats = CallStats()
    cache = DiskCache(out / CACHE_DIR if cfg.cache else None)
    tok = _LockedTokenizer(tokenizer)
    search = _SearchFn(search_client, cfg.topk, serialise_search)
    teacher_info = {"mode": cfg.mode, "model": model, "endpoint": endpoint_url}
    closers: list[Callable[[], None]] = []
    if cfg.mode == "agents":
        endpoint = ChatEndpoint(
            endpoint_url,
            model,
            api_key,
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            retry=cfg.retry,
            cache=cache,
            stats=stats,
            sleep=sleep,
        )
        closers.append(endpoint.close)
        teacher: MultiAgentTeacher | PolicyTeacher = MultiAgentTeacher(endpoint, tok, search, cfg)
    else:
        from masksearch.env.generators import OpenAIGenerator

        inner = OpenAIGenerator(endpoint_url, model, api_key, api=cfg.api, temperature=cfg.temperature)
        closers.append(inner.close)
        generator = ResilientGenerator(inner, model, retry=cfg.retry, cache=cache, stats=stats, sleep=sleep)
        teacher = PolicyTeacher(generator, tok, search, cfg)

    def work(item: SynthesisItem) -> dict[str, Any]:
        try:
            episode = teacher.run(item)
        except EndpointError as exc:
            return failed_record(item, exc, teacher_info)
        return judge_episode(item, episode, cfg.answer_check, teacher_info)

    counts: Counter[str] = Counter()
    try:
        with (
            (out / KEPT_FILE).open("a", encoding="utf-8") as kept_fh,
            (out / REJECTED_FILE).open("a", encoding="utf-8") as rejected_fh,
            ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="sft-synth") as pool,
        ):
            futures = {pool.submit(work, item): item for item in todo}
            for future in as_completed(futures):
                try:
                    record = future.result()
                except Exception as exc:  # a bug or an unexpected error: record it, keep going
                    logger.exception("item %s crashed", futures[future].id)
                    record = failed_record(futures[future], exc, teacher_info)
                    record["detail"] = f"internal error: {record['detail']}"
                fh = kept_fh if record["status"] == "kept" else rejected_fh
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                fh.flush()
                counts[record["reason"]] += 1
                if on_record is not None:
                    on_record(record)
    finally:
        for close in closers:
            close()
    report = build_report(
        out,
        items=len(items),
        this_run={"ran": len(todo), "skipped": len(items) - len(todo), "reasons": dict(counts)},
        endpoint_calls=stats.as_dict(),
        teacher=teacher_info,
        config={k: v for k, v in asdict(cfg).items() if k != "retry"} | {"retry": asdict(cfg.retry)},
        wall_s=round(time.perf_counter() - started, 3),
    )
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report
