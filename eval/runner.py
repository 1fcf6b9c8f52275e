"""Run the search environment over evaluation sets, score every sample, write the results.

:func:`run_eval` drives :func:`masksearch.env.standalone.run_search_episodes` (the same turn logic
as the verl agent loop) over the samples of one or more :class:`EvalDataset`, ``batch_size``
episodes at a time, scores each response with :func:`masksearch.eval.metrics.score_sample`, and
writes into ``out_dir``:

- ``trajectories.jsonl``: one line per sample, appended after every batch (id, data source,
  question, golds, answer, scores, env stats, ``error``, the full trajectory);
- ``results.json``: per data source and overall (see :mod:`masksearch.eval.report`), plus the
  run's settings;
- ``results.md``: the same as a Markdown table.

Resuming: samples whose id already has a line without ``error`` are not run again; failed
samples are retried. The results cover every sample of the current run (resumed ones included).
The settings that change generations (model, env, budgets, temperature, seed...) are stored in
``run.json``; resuming with different ones is refused rather than mixing two runs.

Failures never stop the run: when a batch raises, its samples are run one by one, and a sample
that still raises is recorded with ``error`` and scored 0. A sample whose searches failed (the
retriever was down) is scored as it stands and also marked with ``error``. The report's
``exit_code`` is :data:`EXIT_FAILURES` when any sample failed.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from masksearch.core.atomic import atomic_write_json, atomic_write_text
from masksearch.core.errors import one_line
from masksearch.core.jsonl import UNREADABLE, read_jsonl
from masksearch.core.logs import module_logger
from masksearch.core.secrets import redact
from masksearch.env.config import SearchEnvConfig
from masksearch.env.standalone import Trajectory, run_search_episode, run_search_episodes
from masksearch.eval.datasets import EvalDataset, EvalSample
from masksearch.eval.metrics import DEFAULT_METRICS, empty_scores, metric_name, score_sample
from masksearch.eval.report import results_table, summarise

logger = module_logger(__name__)

__all__ = [
    "EXIT_FAILURES",
    "RESULTS_FILE",
    "RESULTS_MD",
    "RUN_FILE",
    "TRAJECTORIES_FILE",
    "EvalReport",
    "EvalResumeError",
    "EvalSettings",
    "read_records",
    "run_eval",
]

TRAJECTORIES_FILE = "trajectories.jsonl"
RESULTS_FILE = "results.json"
RESULTS_MD = "results.md"
RUN_FILE = "run.json"
#: Exit code of ``masksearch eval`` when some samples failed (the run itself completed).
EXIT_FAILURES = 3


class EvalResumeError(ValueError):
    """``out_dir`` holds a run made with other settings."""


@dataclass(frozen=True)
class EvalSettings:
    """How to run an evaluation.

    Attributes:
        batch_size: episodes generated together.
        max_response_tokens: response budget per episode (generated + observation tokens).
        max_samples: evaluate only the first N samples of each dataset (``None``: all).
        answer_rewards: answer rewards to report (``em``, ``f1``, ``recall``, ``llm_judge``...).
        show_progress: draw a tqdm progress bar on stderr: samples done, and while a batch runs,
            its number and the generate calls and new tokens so far.
    """

    batch_size: int = 8
    max_response_tokens: int = 1024
    max_samples: int | None = None
    answer_rewards: tuple[str, ...] = DEFAULT_METRICS
    show_progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_response_tokens < 1:
            raise ValueError(f"max_response_tokens must be >= 1, got {self.max_response_tokens}")
        if self.max_samples is not None and self.max_samples < 0:
            raise ValueError(f"max_samples must be >= 0, got {self.max_samples}")
        if not self.answer_rewards:
            raise ValueError("answer_rewards must name at least one reward")


@dataclass
class EvalReport:
    """What :func:`run_eval` did.

    Attributes:
        out_dir: the output folder.
        results: the ``results.json`` content.
        n_samples: samples in this run (resumed + new).
        n_new: samples generated now.
        n_resumed: samples taken from an earlier run.
        failures: samples with an ``error``.
        skipped: dataset rows skipped (no answer / no prompt).
        elapsed_s: wall time of this call.
    """

    out_dir: Path
    results: dict[str, Any]
    n_samples: int
    n_new: int
    n_resumed: int
    failures: int
    skipped: int
    elapsed_s: float
    skip_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILURES if self.failures else 0

    def summary_line(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.skip_reasons.items()))
        return (
            f"evaluated {self.n_samples} samples ({self.n_new} new, {self.n_resumed} resumed) in "
            f"{self.elapsed_s:.1f}s; failures: {self.failures}; skipped rows: {self.skipped}"
            + (f" ({reasons})" if reasons else "")
            + f" -> {self.out_dir / RESULTS_FILE}"
        )


# --------------------------------------------------------------------------- records
def read_records(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Records of a ``trajectories.jsonl`` by id (the last line of an id wins).

    A line that is not valid JSON (a run killed mid-write) is ignored with a warning.
    """

    def warn(n: int, reason: str) -> None:
        if reason == UNREADABLE:
            logger.warning("%s:%d: unreadable line ignored (interrupted write?)", path, n)

    records = read_jsonl(path, on_skip=warn)
    return {record["id"]: record for record in records if isinstance(record.get("id"), str)}


class _Writer:
    """Appends records to ``trajectories.jsonl``, one flush per batch."""

    def __init__(self, path: Path):
        self.path = path
        needs_newline = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        self.fh = path.open("a", encoding="utf-8")
        if needs_newline:  # a killed run left half a line; keep ours on their own lines
            self.fh.write("\n")

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        for record in records:
            self.fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# --------------------------------------------------------------------------- progress
class _Progress:
    """The eval bar: samples done (a batch's samples finish together), and what the running batch
    has done so far, so a long batch is not silent.

    The postfix reads ``batch 2/13: 3 generate calls, 1,234 new tokens; failed 0``; it is redrawn
    when a batch starts and ends, and at most every ``interval_s`` after a generate call.
    """

    def __init__(self, bar: Any, n_batches: int, interval_s: float = 0.5):
        self.bar = bar
        self.n_batches = n_batches
        self.interval_s = interval_s
        self.batch = self.calls = self.tokens = self.failed = 0
        self._last = 0.0

    def start_batch(self) -> None:
        self.batch += 1
        self.calls = self.tokens = 0
        self._show(force=True)

    def on_results(self, results: Sequence[Any]) -> None:
        self.calls += 1
        self.tokens += sum(len(getattr(r, "token_ids", None) or ()) for r in results)
        self._show()

    def end_batch(self, n_samples: int, failed: int) -> None:
        self.failed = failed
        self.bar.set_postfix_str(self._text(), refresh=False)
        self.bar.update(n_samples)
        self._last = time.monotonic()

    def _text(self) -> str:
        calls = f"{self.calls} generate call{'s' if self.calls != 1 else ''}"
        tokens = f", {self.tokens:,} new tokens" if self.tokens else ""  # text-out backends: no ids
        return f"batch {self.batch}/{self.n_batches}: {calls}{tokens}; failed {self.failed}"

    def _show(self, force: bool = False) -> None:
        self.bar.set_postfix_str(self._text(), refresh=False)
        now = time.monotonic()
        if force or now - self._last >= self.interval_s:
            self.bar.refresh()
            self._last = now


class _ReportingGenerator:
    """``generator`` unchanged, telling ``on_results`` about every call (for :class:`_Progress`).

    ``generate_batch`` exists only when the wrapped generator has it, as the env runner picks the
    batched path by its presence; any other attribute (``close``, ``tokenizer``...) is the wrapped one's.
    """

    def __init__(self, generator: Any, on_results: Any):
        self._generator = generator
        self._on_results = on_results
        self.token_in = generator.token_in
        if callable(getattr(generator, "generate_batch", None)):
            self.generate_batch = self._generate_batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_generator"], name)

    def generate(self, prompt: Any, max_new_tokens: int, stop: Sequence[str], *, messages: Any = None) -> Any:
        result = self._generator.generate(prompt, max_new_tokens, stop, messages=messages)
        self._on_results([result])
        return result

    def _generate_batch(self, prompts: Sequence[Any], max_new_tokens: Any, stop: Sequence[str]) -> Any:
        results = self._generator.generate_batch(prompts, max_new_tokens, stop)
        self._on_results(results)
        return results


# --------------------------------------------------------------------------- running
def _run_batch(
    generator: Any,
    tokenizer: Any,
    samples: list[EvalSample],
    search_client: Any,
    config: SearchEnvConfig,
    max_response_tokens: int,
) -> list[tuple[Trajectory | None, str | None]]:
    """Episodes of ``samples``; a batch that raises is re-run one sample at a time."""
    try:
        trajectories = run_search_episodes(
            generator,
            tokenizer,
            [s.messages for s in samples],
            search_client,
            config,
            batch_size=len(samples),
            max_response_tokens=max_response_tokens,
        )
        return [(t, None) for t in trajectories]
    except Exception as exc:
        error = one_line(exc, 500, typed=True)
        if len(samples) == 1:
            logger.warning("sample %s failed: %s", samples[0].id, error)
            return [(None, f"generation: {error}")]
        logger.warning("batch of %d failed (%s); running its samples one by one", len(samples), error)
    out: list[tuple[Trajectory | None, str | None]] = []
    for sample in samples:
        try:
            traj = run_search_episode(
                generator,
                tokenizer,
                sample.messages,
                search_client,
                config,
                max_response_tokens=max_response_tokens,
            )
            out.append((traj, None))
        except Exception as exc:
            error = one_line(exc, 500, typed=True)
            logger.warning("sample %s failed: %s", sample.id, error)
            out.append((None, f"generation: {error}"))
    return out


def _record(
    sample: EvalSample, traj: Trajectory | None, error: str | None, rewards: Sequence[str]
) -> dict[str, Any]:
    if traj is None:
        scores = empty_scores(rewards)
        stats: dict[str, Any] = {"num_searches": 0, "num_turns": 0, "num_retrieval_errors": 0}
    else:
        scores = score_sample(
            sample.data_source, traj.response_text, sample.golds, sample.extra_info, rewards
        )
        stats = dict(traj.stats)
        if error is None and stats.get("num_retrieval_errors"):
            first = next((t.error for t in traj.turns if t.error), "")
            error = f"retrieval: {stats['num_retrieval_errors']} failed search(es): {first}"
    return {
        "id": sample.id,
        "dataset": sample.dataset,
        "data_source": sample.data_source,
        "question": sample.question,
        "golds": list(sample.golds),
        "answer": traj.answer if traj is not None else None,
        "scores": scores,
        "stats": stats,
        "stop_reason": traj.stop_reason if traj is not None else "error",
        "error": error,
        "trajectory": traj.to_dict() if traj is not None else None,
    }


def _fingerprint(
    config: SearchEnvConfig, settings: EvalSettings, run_info: Mapping[str, Any]
) -> dict[str, Any]:
    """Settings that change what a sample's trajectory is (resuming requires them equal)."""
    env = redact(asdict(config))  # a retriever URL is written without userinfo/query
    # settings that do not change a trajectory (the error-rate abort is the RL trainer's)
    for key in (
        "search_timeout_s",
        "search_retries",
        "max_retrieval_error_rate",
        "max_retrieval_error_steps",
    ):
        env.pop(key, None)
    return {
        **{k: v for k, v in run_info.items() if k != "data"},
        "env": env,
        "max_response_tokens": settings.max_response_tokens,
    }


def _check_resume(out_dir: Path, fingerprint: dict[str, Any], has_records: bool) -> None:
    path = out_dir / RUN_FILE
    if has_records and path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8")).get("fingerprint", {})
        except (OSError, json.JSONDecodeError, AttributeError):
            raise EvalResumeError(
                f"{path} is unreadable or torn, so the earlier run's settings are unknown; "
                "use another --out or --overwrite"
            ) from None
        old, new = (
            json.loads(json.dumps(previous, default=str)),
            json.loads(json.dumps(fingerprint, default=str)),
        )
        if old and old != new:
            diffs = [
                f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
                for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)
            ]
            raise EvalResumeError(
                f"{out_dir} holds a run with other settings ({'; '.join(diffs)[:400]}); "
                "use another --out or --overwrite"
            )
    atomic_write_json(path, {"fingerprint": fingerprint}, indent=2, default=str)


def _rescore_missing(
    record: dict[str, Any], keys: Sequence[str], rewards: Sequence[str], sample: EvalSample
) -> None:
    """Records from a run that reported fewer metrics get them from the stored response."""
    scores = record.setdefault("scores", {})
    if all(k in scores for k in keys):
        return
    traj = record.get("trajectory")
    if traj is None:
        scores.update({k: 0.0 for k in keys if k not in scores})
        return
    fresh = score_sample(
        sample.data_source, traj.get("response_text", ""), sample.golds, sample.extra_info, rewards
    )
    scores.update({k: fresh[k] for k in keys if k not in scores})


def run_eval(
    generator: Any,
    tokenizer: Any,
    datasets: Sequence[EvalDataset],
    search_client: Any,
    config: SearchEnvConfig,
    out_dir: str | os.PathLike[str],
    *,
    settings: EvalSettings = EvalSettings(),
    run_info: Mapping[str, Any] | None = None,
) -> EvalReport:
    """Evaluate ``generator`` on ``datasets`` with the search env; resume from ``out_dir``.

    Args:
        generator: a :class:`~masksearch.env.generators.TextGenerator`.
        tokenizer: the model's tokenizer (chat template, budgets).
        datasets: loaded datasets (:func:`masksearch.eval.datasets.load_eval_dataset`).
        search_client: ``search(queries, topk)`` (``masksearch.env.retrieval.get_search_client``).
        config: env settings (turns, topk, observation length, system prompt).
        out_dir: output folder (created; an existing run in it is resumed).
        settings: batch size, budgets, sample limit, metrics.
        run_info: what produced the generations (model, backend, temperature, seed...); stored in
            ``results.json`` and part of the resume check.

    Returns:
        An :class:`EvalReport` (``exit_code`` is non-zero when samples failed).

    Raises:
        EvalResumeError: ``out_dir`` holds a run made with other settings.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = dict(run_info or {})
    rewards = tuple(settings.answer_rewards)
    metric_keys = [metric_name(r) for r in rewards]

    planned: list[EvalSample] = []
    skipped: Counter[str] = Counter()
    skip_reasons: Counter[str] = Counter()
    for dataset in datasets:
        limit = len(dataset.samples) if settings.max_samples is None else settings.max_samples
        planned.extend(dataset.samples[:limit])
        skipped.update(dataset.skipped)
        skip_reasons.update(dataset.skip_reasons)
    seen: set[str] = set()
    unique = []
    for sample in planned:  # the same file given twice is evaluated once
        if sample.id not in seen:
            seen.add(sample.id)
            unique.append(sample)
    planned = unique

    traj_path = out / TRAJECTORIES_FILE
    records = read_records(traj_path)
    _check_resume(out, _fingerprint(config, settings, info), bool(records))
    done = {sid for sid, r in records.items() if not r.get("error")}
    todo = [s for s in planned if s.id not in done]
    n_resumed = len(planned) - len(todo)
    logger.info("%d samples planned, %d already done, %d to run", len(planned), n_resumed, len(todo))

    writer = _Writer(traj_path)
    failures_now = 0
    n_batches = -(-len(todo) // settings.batch_size)
    bar = tqdm(
        total=len(planned), initial=n_resumed, desc="eval", unit="sample", disable=not settings.show_progress
    )
    progress = _Progress(bar, n_batches)
    if settings.show_progress:
        generator = _ReportingGenerator(generator, progress.on_results)
    try:
        for chunk in _chunks(todo, settings.batch_size):
            progress.start_batch()
            results = _run_batch(
                generator, tokenizer, chunk, search_client, config, settings.max_response_tokens
            )
            batch = [_record(s, t, e, rewards) for s, (t, e) in zip(chunk, results, strict=True)]
            writer.write(batch)
            for record in batch:
                records[record["id"]] = record
                failures_now += bool(record["error"])
            progress.end_batch(len(chunk), failures_now)
    finally:
        bar.close()
        writer.close()

    by_id = {s.id: s for s in planned}
    final = [records[s.id] for s in planned]
    for record in final:
        _rescore_missing(record, metric_keys, rewards, by_id[record["id"]])
    elapsed = time.perf_counter() - started
    results: dict[str, Any] = {"metrics": metric_keys, **summarise(final, metric_keys, skipped)}
    results["skip_reasons"] = dict(skip_reasons)
    results["run"] = {
        **info,
        "env": redact(asdict(config)),
        "batch_size": settings.batch_size,
        "max_response_tokens": settings.max_response_tokens,
        "max_samples": settings.max_samples,
        "answer_rewards": list(rewards),
        "n_new": len(todo),
        "n_resumed": n_resumed,
        "elapsed_s": round(elapsed, 3),
        "samples_per_s": round(len(todo) / elapsed, 4) if todo and elapsed > 0 else None,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if "llm_judge" in rewards:
        from masksearch.rewards import resolve_reward

        stats = getattr(resolve_reward("llm_judge"), "stats", None)
        results["judge_stats"] = stats() if callable(stats) else None
    atomic_write_json(out / RESULTS_FILE, results, indent=2, ensure_ascii=False)
    title = f"# masksearch eval: {info.get('model', '?')}\n\n"
    note = "\nEM / F1 / Recall (and Judge) are mean answer scores in %; format ok: responses that follow the tag grammar.\n"
    atomic_write_text(out / RESULTS_MD, title + results_table(results) + note)
    return EvalReport(
        out_dir=out,
        results=results,
        n_samples=len(planned),
        n_new=len(todo),
        n_resumed=n_resumed,
        failures=int(results["overall"]["failures"]),
        skipped=sum(skipped.values()),
        elapsed_s=elapsed,
        skip_reasons=dict(skip_reasons),
    )
