"""Orchestration: pick the teacher, run it over the items (resumable, concurrent), judge, report."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from masksearch.core.atomic import atomic_write_json
from masksearch.core.logs import module_logger
from masksearch.sft.endpoint import CallStats, ChatEndpoint, DiskCache, EndpointError, ResilientGenerator
from masksearch.sft.synthesis.config import CACHE_DIR, KEPT_FILE, REJECTED_FILE, REPORT_FILE, SynthesisConfig
from masksearch.sft.synthesis.items import SynthesisItem, load_items
from masksearch.sft.synthesis.judging import failed_record, judge_episode
from masksearch.sft.synthesis.report import build_report
from masksearch.sft.synthesis.resume import prepare_resume
from masksearch.sft.synthesis.search import LockedTokenizer, SearchFn

logger = module_logger(__name__)

__all__ = ["synthesize"]


def _units(items: list[SynthesisItem], samples: int) -> list[SynthesisItem]:
    """Each item ``samples`` times; samples after the first get the id suffix ``~s<k>``."""
    if samples <= 1:
        return items
    return [item if k == 0 else replace(item, id=f"{item.id}~s{k}") for item in items for k in range(samples)]


def synthesize(
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    search_client: Any,
    tokenizer: Any,
    endpoint_url: str | None = None,
    model: str | None = None,
    generator: Any = None,
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
        search_client: ``search(queries, topk) -> list[SearchOutcome]`` (``make_search_client``).
        tokenizer: the student's tokenizer (observation budget, turn cutting; as in RL).
        endpoint_url: the teacher's OpenAI-compatible server (``agents`` / ``policy``; not ``rules``).
        model: the served model name (``agents`` / ``policy``).
        generator: ``policy`` only: a token-in generator run in process (e.g. ``HFGenerator``, shared
            by the worker threads) instead of ``endpoint_url``; ``model`` names it in the records.
        config: settings (``mode`` picks the teacher).
        api_key: bearer token for the endpoint.
        serialise_search: one search at a time (in-process indexes); False for a retrieval server.
        on_record: called with each record after it is written (progress, tests).
        sleep: backoff sleep.

    Returns:
        The report (also written to ``out_dir/report.json``).

    Raises:
        ValueError: ``agents`` / ``policy`` without ``endpoint_url`` and ``model``.
    """
    cfg = config or SynthesisConfig()
    if cfg.mode != "rules" and not (endpoint_url and model) and not (cfg.mode == "policy" and generator):
        raise ValueError(f"teacher mode {cfg.mode!r} needs an endpoint URL and a model name")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    items = _units(load_items(data, cfg.limit), cfg.samples_per_item if cfg.mode == "policy" else 1)
    done = prepare_resume(out, cfg.retry_failed)
    todo = [item for item in items if item.id not in done]
    logger.info("synthesis: %d items, %d done, %d to run", len(items), len(items) - len(todo), len(todo))

    stats = CallStats()
    cache = DiskCache(out / CACHE_DIR if cfg.cache and cfg.mode != "rules" else None)
    tok = LockedTokenizer(tokenizer)
    search = SearchFn(search_client, cfg.env_config().topk, serialise_search)
    teacher_info: dict[str, Any] = {"mode": cfg.mode, "model": model or cfg.mode, "endpoint": endpoint_url}
    closers: list[Callable[[], None]] = []
    if cfg.mode == "rules":
        from masksearch.sft.teachers.rules import RulesTeacher

        teacher: Any = RulesTeacher(tok, search, cfg)
    elif cfg.mode == "agents":
        from masksearch.sft.teachers.agents import MultiAgentTeacher

        endpoint = ChatEndpoint(
            str(endpoint_url),
            str(model),
            api_key,
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            retry=cfg.retry,
            cache=cache,
            stats=stats,
            sleep=sleep,
        )
        closers.append(endpoint.close)
        teacher = MultiAgentTeacher(endpoint, tok, search, cfg)
    elif generator is not None:  # in process: no HTTP, no retries, no call cache
        from masksearch.sft.teachers.policy import PolicyTeacher

        teacher = PolicyTeacher(generator, tok, search, cfg)
    else:
        from masksearch.env.generators import OpenAIGenerator
        from masksearch.sft.teachers.policy import PolicyTeacher

        inner = OpenAIGenerator(
            str(endpoint_url), str(model), api_key, api=cfg.api, temperature=cfg.temperature
        )
        closers.append(inner.close)
        generators: dict[str, PolicyTeacher] = {}
        lock = threading.Lock()

        def policy_for(item: SynthesisItem) -> PolicyTeacher:
            # one cache namespace per sample index: sample k of a prompt is not sample 0 again
            suffix = item.id.rpartition("~s")[2] if "~s" in item.id else "0"
            with lock:
                if suffix in generators:
                    return generators[suffix]
                gen = ResilientGenerator(
                    inner, f"{model}#s{suffix}", retry=cfg.retry, cache=cache, stats=stats, sleep=sleep
                )
                generators[suffix] = PolicyTeacher(gen, tok, search, cfg)
                return generators[suffix]

        teacher = None

    def work(item: SynthesisItem) -> dict[str, Any]:
        try:
            runner = teacher if teacher is not None else policy_for(item)
            episode = runner.run(item)
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
        env=asdict(cfg.env_config()),
        config={k: v for k, v in asdict(cfg).items() if k != "retry"} | {"retry": asdict(cfg.retry)},
        wall_s=round(time.perf_counter() - started, 3),
    )
    atomic_write_json(out / REPORT_FILE, report, indent=2, ensure_ascii=False)
    return report
