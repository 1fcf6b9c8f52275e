"""Read what the project writes into one list of :class:`Sample` records (the viewer's only input).

Recognised sources (a path may be any of them, or a folder holding them up to three levels down):

===================  ==========================================================================
eval run             ``trajectories.jsonl`` (+ ``results.json``) written by ``masksearch eval``
verl dump            ``<step>.jsonl`` files of ``trainer.rollout_data_dir`` or
                     ``trainer.validation_data_dir`` (verl's ``_write_generations``: ``input``,
                     ``output``, ``gts``, ``score``, ``step``, then the reward's extra info
                     written over them: ``acc``, ``format_ok``, ..., ``overlong_reward``)
SFT synthesis        ``kept.jsonl`` / ``rejected.jsonl`` of ``masksearch sft synthesize``
learning report      ``report.json`` with ``stages`` (``make learn``); not samples, a page
training health      ``health_events.jsonl`` of the RL watchdog (``trainer.default_local_dir``):
                     not samples, a list in the run summary; also found next to a verl dump
                     (the dump's folder, its parent, or the parent's ``checkpoints/``)
===================  ==========================================================================

Every sample carries the same fields whatever its source: the prompt messages, the response split
into the grammar's blocks (:func:`masksearch.core.grammar.parse_turns`), each observation split into
its documents, the gold spans as alias groups, the extracted answer, the reward parts (``score``,
``acc``, ``answer_score``, ``format_ok``, ``format_reason``, ``num_searches``; taken from the source
when it has them, else recomputed with :func:`masksearch.rewards.compute_score` at its defaults and
marked ``rewards_source="recomputed"``) and the env stats. Unreadable lines are skipped and counted.

A verl sample's ``score`` is the reward verl trained on, and when that is more than the reward
function's score its parts are listed in ``score_parts`` (keys of ``rewards`` that add up to
``score``; see :func:`_verl_rewards`): ``reward_fn_score``, the ``dapo`` reward manager's
``overlong_reward`` and, if the dump does not account for all of it, ``unexplained``. The reward's
search-health guards (``closed_book``, ``ungrounded_fills``, ``ungrounded_answer``), when they were on,
are shown with the parts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masksearch.core.errors import UserFacingError
from masksearch.core.grammar import INFORMATION, count_searches, extract_answer, parse_turns
from masksearch.core.jsonl import read_jsonl
from masksearch.core.logs import module_logger
from masksearch.core.tokens import MASK_TOKEN
from masksearch.rewards import task_kind
from masksearch.rewards.answer import mentions
from masksearch.rewards.hybrid import gold_groups
from masksearch.search_tool.observation import parse_observation

logger = module_logger(__name__)

__all__ = [
    "HEALTH_EVENTS_FILE",
    "REWARD_KEYS",
    "SCORE_PART_KEYS",
    "LearnReport",
    "LoadResult",
    "Sample",
    "Source",
    "discover",
    "load_sources",
    "read_health_events",
    "split_documents",
]

#: The reward parts every sample shows (the training reward's keys, ``pred`` aside).
REWARD_KEYS = ("score", "acc", "answer_score", "format_ok", "format_reason", "num_searches")
#: The parts a verl sample's ``score`` may add up from (keys of ``Sample.rewards``, in this order).
SCORE_PART_KEYS = ("reward_fn_score", "overlong_reward", "unexplained")
#: Parts smaller than this are rounding (verl sums float32 reward tensors).
_PART_TOLERANCE = 1e-5
#: Env counters shown per sample (the agent loop's ``extra_fields``).
STAT_KEYS = (
    "num_searches",
    "num_turns",
    "num_invalid_actions",
    "num_retrieval_errors",
    "hit_turn_budget",
    "hit_length_budget",
    "retrieval_latency_s",
)
_MAX_SCAN_DEPTH = 3
_STEP_FILE = re.compile(r"^(\d+)\.jsonl$")
_PASSAGE_RE = re.compile(r"Passage: (.*?)\nNumber of masks:", re.S)
_SEARCH_FAILED = "Search failed:"
#: The RL watchdog's events file (``masksearch.recipes.health.EVENTS_FILE``; read by path: the
#: viewer does not import recipes). One JSON object a line: step, rule, metric, value, baseline, ...
HEALTH_EVENTS_FILE = "health_events.jsonl"
#: The reward's search-health guard keys (``masksearch.rewards.search_guard.GUARD_KEYS``).
_GUARD_KEYS = ("closed_book", "ungrounded_fills", "ungrounded_answer")


@dataclass(frozen=True)
class Source:
    """One recognised input: ``kind`` is ``eval``, ``verl``, ``sft``, ``learn`` or ``health``."""

    kind: str
    path: Path
    label: str


@dataclass
class Sample:
    """One trajectory, in the viewer's shape (JSON-ready through :meth:`to_json`)."""

    run: str
    kind: str  # eval | rollout | validation | sft
    id: str
    data_source: str
    prompt: list[dict[str, str]]
    response: str
    golds: list[list[str]]
    answer: str | None
    rewards: dict[str, Any]
    rewards_source: str  # source | recomputed
    stats: dict[str, Any]
    stats_source: str  # source | derived
    step: int | None = None
    score_parts: list[str] = field(default_factory=list)  # keys of rewards adding up to score (verl)
    stop_reason: str | None = None
    error: str | None = None
    status: str | None = None  # sft: kept | rejected
    reason: str | None = None  # sft: the rejection reason
    detail: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    key: int = -1
    # filled by finish()
    blocks: list[list[Any]] = field(default_factory=list)
    group: str = ""
    gold_in_docs: bool = False

    @property
    def missed(self) -> bool:
        """A gold span was in a retrieved document, but the answer was not right."""
        return self.gold_in_docs and (_num(self.rewards.get("acc")) or 0.0) < 1.0

    def finish(self) -> None:
        """Split the response into blocks and documents; the prompt group; the gold-in-docs flag."""
        self.blocks = []
        observations: list[str] = []
        for turn in parse_turns(self.response):
            if turn.kind == INFORMATION.name:
                observations.append(turn.content)
                docs = split_documents(turn.content)  # the raw text only when it has no documents
                self.blocks.append([turn.kind, "" if docs else turn.content, turn.closed, docs])
            else:
                self.blocks.append([turn.kind, turn.content, turn.closed])
        prompt_text = "\n".join(str(m.get("content", "")) for m in self.prompt)
        self.group = hashlib.sha1(prompt_text.encode("utf-8", "replace")).hexdigest()[:12]
        self.gold_in_docs = _gold_in(observations, self.golds)

    def _identity(self) -> dict[str, Any]:
        """The keys that name the sample, the same in the index row and the sample page's JSON."""
        return {"k": self.key, "run": self.run, "kind": self.kind, "id": self.id, "step": self.step}

    def index_row(self) -> dict[str, Any]:
        """The compact row of ``index.html`` (no texts beyond a short preview)."""
        r = self.rewards
        return {
            **self._identity(),
            "ds": self.data_source,
            "score": _num(r.get("score")),
            "acc": _num(r.get("acc")),
            "fmt": _num(r.get("format_ok")),
            "reason": str(r.get("format_reason", "")),
            "ns": int(_num(r.get("num_searches")) or 0),
            "turns": int(_num(self.stats.get("num_turns")) or 0),
            "missed": self.missed,
            "status": self.status or "",
            "sreason": self.reason or "",
            "g": self.group,
            "ans": " | ".join(line.strip() for line in (self.answer or "").splitlines() if line.strip())[:80],
            "q": _preview(self.prompt),
        }

    def to_json(self) -> dict[str, Any]:
        """The sample page's JSON: the identity, then :data:`_JSON_FIELDS` in that order."""
        return {**self._identity(), **{name: getattr(self, name) for name in _JSON_FIELDS}}


#: The attributes a sample page shows besides its identity, in the JSON's order.
_JSON_FIELDS = (
    *("data_source", "prompt", "blocks", "golds", "answer", "rewards", "rewards_source", "score_parts"),
    *("stats", "stats_source", "stop_reason", "error", "status", "reason", "detail", "extra"),
    *("gold_in_docs", "missed", "group"),
)


@dataclass
class LearnReport:
    """``outputs/learn/report.json`` (schema of ``make learn``), kept as read."""

    label: str
    path: Path
    data: dict[str, Any]


@dataclass
class LoadResult:
    """What :func:`load_sources` read: samples, learning reports, run summaries, skip counts."""

    samples: list[Sample]
    reports: list[LearnReport]
    runs: dict[str, dict[str, Any]]  # label -> {"kind", "path", "results" (eval results.json) ...}
    skipped: Counter[str]


# --------------------------------------------------------------------------- helpers
def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _preview(prompt: Sequence[Mapping[str, Any]], limit: int = 140) -> str:
    """The last user message (or the whole prompt) collapsed to one line, cut to ``limit``."""
    text = ""
    for message in prompt:
        if message.get("role") in ("user", "prompt"):
            text = str(message.get("content", ""))
    passage = _PASSAGE_RE.findall(text)
    if passage:
        text = passage[-1]
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _gold_in(observations: Sequence[str], golds: Sequence[Sequence[str]]) -> bool:
    """Some gold alias is :func:`~masksearch.rewards.answer.mentions`-ed in the observations (the
    reward's grounding check: whole words, case, punctuation and spacing ignored).

    >>> _gold_in(["Doc 1(Title: X) founded in 1915."], [["15"]]), _gold_in(["in 1915."], [["1915"]])
    (False, True)
    """
    text = " ".join(observations)
    return any(mentions(text, alias) for group in golds for alias in group)


def split_documents(observation: str) -> list[list[Any]]:
    """``[[n, title, text], ...]`` of an observation, as :func:`~masksearch.search_tool.observation.parse_observation`
    reads it (JSON-ready); an observation without documents (a retrieval error) gives ``[]``.

    >>> split_documents("Doc 1(Title: Paris) Capital.\\nDoc 2(Title: Lyon (city)) A city.\\n")
    [[1, 'Paris', 'Capital.'], [2, 'Lyon (city)', 'A city.']]
    """
    return [list(doc) for doc in parse_observation(observation)]


def _masked_text(prompt: Sequence[Mapping[str, Any]], extra_info: Mapping[str, Any] | None) -> str | None:
    if extra_info and isinstance(extra_info.get("masked_text"), str) and extra_info["masked_text"]:
        return extra_info["masked_text"]
    for message in reversed(list(prompt)):
        found = _PASSAGE_RE.findall(str(message.get("content", "")))
        if found:
            return found[-1]
    return None


def _recompute(
    data_source: str, response: str, ground_truth: Any, prompt: Sequence[Mapping[str, Any]], extra: Any
) -> dict[str, Any]:
    """The training reward at its defaults (recall, format gate) for sources that lack the parts."""
    from masksearch.rewards import compute_score

    extra_info = dict(extra) if isinstance(extra, Mapping) else {}
    masked = _masked_text(prompt, extra_info)
    if masked:
        extra_info["masked_text"] = masked
    out = compute_score(data_source, response, ground_truth, extra_info)
    return {k: out[k] for k in REWARD_KEYS}


def _derived_stats(response: str) -> dict[str, Any]:
    """Env counters read off the text (verl's dumps carry none)."""
    turns = parse_turns(response)
    observations = [t for t in turns if t.kind == INFORMATION.name]
    return {
        "num_searches": count_searches(response),
        "num_turns": len(observations) + (1 if turns and turns[-1].kind != INFORMATION.name else 0),
        "num_retrieval_errors": sum(t.content.strip().startswith(_SEARCH_FAILED) for t in observations),
    }


def _jsonl(path: Path, skipped: Counter[str]) -> Iterator[dict[str, Any]]:
    """The objects of ``path`` (other programs write it: bad bytes are replaced), skips counted."""

    def count(_line: int, reason: str) -> None:
        skipped[f"{path.name}: {reason}"] += 1

    return read_jsonl(path, on_skip=count, errors="replace")


def _messages(value: Any) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    out = []
    for m in value or []:
        if isinstance(m, Mapping):
            out.append({"role": str(m.get("role", "")), "content": str(m.get("content", ""))})
    return out


_DECODED_CHAT = re.compile(r"\A\s*system\n(?P<system>.*?)\nuser\n(?P<user>.*?)(?:\nassistant\n?)?\s*\Z", re.S)


def _split_decoded_prompt(text: str) -> list[dict[str, str]]:
    """verl decodes the prompt with special tokens skipped (``system\\n…\\nuser\\n…\\nassistant``);
    split that back into messages when it has this shape, else keep it as one ``prompt`` message.

    >>> [m["role"] for m in _split_decoded_prompt("system\\nBe brief.\\nuser\\nHi?\\nassistant\\n")]
    ['system', 'user']
    >>> _split_decoded_prompt("Question: why?")
    [{'role': 'prompt', 'content': 'Question: why?'}]
    """
    m = _DECODED_CHAT.match(text)
    if m is None or "\nuser\n" in m.group("user"):  # several user turns: keep the text as it is
        return [{"role": "prompt", "content": text}]
    return [{"role": "system", "content": m.group("system")}, {"role": "user", "content": m.group("user")}]


def _data_source_of(prompt_text: str) -> str:
    return "ramp" if MASK_TOKEN in prompt_text else "qa"


# --------------------------------------------------------------------------- per source
def _record_sample(
    src: Source, kind: str, rec: dict, data_source: str, prompt, response: str, golds, rewards: dict, **fields
) -> Sample:
    """A sample of an eval or SFT record: the record's id, answer and stop reason, the rewards
    recomputed, the stats as the source wrote them (``fields`` adds the rest)."""
    return Sample(
        run=src.label,
        kind=kind,
        id=str(rec.get("id")),
        data_source=data_source,
        prompt=prompt,
        response=response,
        golds=gold_groups(golds, task_kind(data_source)),
        answer=rec.get("answer"),
        rewards=rewards,
        rewards_source="recomputed",
        stats_source="source",
        stop_reason=rec.get("stop_reason"),
        **fields,
    )


def _load_eval(src: Source, skipped: Counter[str]) -> Iterator[Sample]:
    for rec in _jsonl(src.path / "trajectories.jsonl", skipped):
        traj = rec.get("trajectory") or {}
        prompt = _messages(traj.get("messages") or [{"role": "user", "content": rec.get("question", "")}])
        response = str(traj.get("response_text") or "")
        data_source = str(rec.get("data_source") or "unknown")
        golds_raw = rec.get("golds") or []
        scores = dict(rec.get("scores") or {})
        rewards = _recompute(data_source, response, golds_raw, prompt, None)
        for key, value in scores.items():  # eval's own metrics (em, f1, recall, judge...) next to them
            if key not in rewards and key != "pred":
                rewards[key] = value
        turn_errors = [t.get("error") for t in traj.get("turns") or [] if t.get("error")]
        yield _record_sample(
            src,
            "eval",
            rec,
            data_source,
            prompt,
            response,
            golds_raw,
            rewards,
            stats=dict(rec.get("stats") or {}),
            error=rec.get("error"),
            extra={
                "dataset": rec.get("dataset"),
                "question": rec.get("question"),
                "turn_errors": turn_errors,
            },
        )


def _verl_rewards(
    rec: Mapping[str, Any], data_source: str, response: str, prompt: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any], str, list[str]]:
    """The reward parts of one verl dump row: ``(rewards, rewards_source, score_parts)``.

    verl 0.9.1's ``_write_generations`` writes its own ``score`` column (the reward it trained on)
    and then every column of the reward's extra info over it. So when the row carries the reward
    function's keys (``acc``, ``format_ok``, ...), its ``score`` is the reward function's score and
    the reward verl trained on is ``reward`` (validation dumps) or that score plus the ``dapo``
    reward manager's ``overlong_reward`` (logged with ``overlong_buffer_cfg.log``). A row without
    them has verl's own ``score``, and the reward function's score is recomputed.

    ``rewards["score"]`` is then the reward verl trained on; if it differs from the reward
    function's score, ``score_parts`` names the keys adding up to it: ``reward_fn_score``,
    ``overlong_reward`` when logged, and ``unexplained`` for what the row does not account for (a
    penalty that was not logged, or a reward config other than the defaults, when recomputed).

    >>> row = {"score": 0.0, "acc": 0.0, "format_ok": 1.0, "num_searches": 1, "overlong_reward": -0.5}
    >>> rewards, _, parts = _verl_rewards(row, "ramp", "", [])
    >>> rewards["score"], parts, [rewards[k] for k in parts]
    (-0.5, ['reward_fn_score', 'overlong_reward'], [0.0, -0.5])
    """
    if all(k in rec for k in ("acc", "format_ok", "num_searches")):
        rewards = {k: rec.get(k) for k in REWARD_KEYS}
        rewards_source = "source"
        fn_score = _num(rec.get("score"))  # the reward function's: its extra info replaced verl's column
        total = _num(rec.get("reward"))
    else:
        rewards = _recompute(data_source, response, rec.get("gts"), prompt, None)
        rewards_source = "recomputed"
        fn_score = _num(rewards.get("score"))
        total = _num(rec.get("reward"))
        if total is None:
            total = _num(rec.get("score"))  # verl's own column: the reward it trained on
    for key in ("em", "f1", "recall", "judge", *_GUARD_KEYS):
        if key in rec:
            rewards[key] = rec[key]
    overlong = _num(rec.get("overlong_reward"))
    if "overlong" in rec:
        rewards["overlong"] = rec["overlong"]
    if total is None and fn_score is not None:
        total = fn_score + (overlong or 0.0)
    rewards["score"] = total
    parts: dict[str, float | None] = {"reward_fn_score": fn_score}
    if overlong is not None:
        parts["overlong_reward"] = overlong
    if total is not None and fn_score is not None:
        gap = total - fn_score - (overlong or 0.0)
        if abs(gap) > _PART_TOLERANCE:
            parts["unexplained"] = gap
    if len(parts) == 1:
        return rewards, rewards_source, []  # the score is the reward function's: nothing to split
    rewards.update(parts)
    return rewards, rewards_source, list(parts)


def _load_verl(src: Source, skipped: Counter[str]) -> Iterator[Sample]:
    kind = "validation" if "val" in src.path.name.lower() else "rollout"
    files = sorted(
        (p for p in src.path.iterdir() if _STEP_FILE.match(p.name)), key=lambda p: int(p.name.split(".")[0])
    )
    for path in files:
        file_step = int(path.name.split(".")[0])
        for i, rec in enumerate(_jsonl(path, skipped)):
            prompt_text = str(rec.get("input", ""))
            response = str(rec.get("output", ""))
            data_source = str(rec.get("data_source") or _data_source_of(prompt_text))
            prompt = _split_decoded_prompt(prompt_text)
            gts = rec.get("gts")
            rewards, rewards_source, score_parts = _verl_rewards(rec, data_source, response, prompt)
            step = rec.get("step", file_step)
            yield Sample(
                run=src.label,
                kind=kind,
                id=str(rec.get("uid") or rec.get("request_id") or f"{file_step}:{i}"),
                step=int(step) if isinstance(step, int | float) else file_step,
                data_source=data_source,
                prompt=prompt,
                response=response,
                golds=gold_groups(gts, task_kind(data_source)),
                answer=extract_answer(response),
                rewards=rewards,
                rewards_source=rewards_source,
                score_parts=score_parts,
                stats=_derived_stats(response),
                stats_source="derived",
            )


def _load_sft(src: Source, skipped: Counter[str]) -> Iterator[Sample]:
    for name in ("kept.jsonl", "rejected.jsonl"):
        path = src.path / name
        if not path.is_file():
            continue
        for rec in _jsonl(path, skipped):
            prompt = _messages(rec.get("prompt"))
            response = str(rec.get("response") or "")
            data_source = str(rec.get("data_source") or "unknown")
            gt = rec.get("ground_truth")
            rewards = _recompute(data_source, response, gt, prompt, rec.get("extra_info"))
            if "answer_score" in rec:
                rewards["sft_answer_score"] = rec["answer_score"]
            yield _record_sample(
                src,
                "sft",
                rec,
                data_source,
                prompt,
                response,
                gt,
                rewards,
                stats={
                    "num_searches": rec.get("num_searches", 0),
                    "num_turns": rec.get("num_turns", 0),
                    "num_retrieval_errors": _derived_stats(response)["num_retrieval_errors"],
                },
                status=rec.get("status") or name.split(".")[0],
                reason=rec.get("reason"),
                detail=rec.get("detail") or None,
                extra={"teacher": rec.get("teacher")},
            )


_LOADERS = {"eval": _load_eval, "verl": _load_verl, "sft": _load_sft}


# --------------------------------------------------------------------------- discovery
def read_health_events(path: Path) -> list[dict[str, Any]]:
    """The watchdog's events in ``path`` (a ``health_events.jsonl``), oldest first.

    Bad lines are skipped; a step replayed after a resume keeps its last event per rule (as
    ``masksearch.recipes.health.read_events`` does).
    """
    by_key: dict[tuple[Any, Any], dict[str, Any]] = {}
    for event in _jsonl(path, Counter()):
        key = (event.get("step"), event.get("rule"))
        by_key.pop(key, None)
        by_key[key] = event
    return sorted(by_key.values(), key=lambda e: _num(e.get("step")) or 0.0)


def _health_near(folder: Path) -> Path | None:
    """The events file of the run a verl dump folder belongs to, if there is one."""
    for candidate in (folder, folder.parent, folder.parent / "checkpoints"):
        path = candidate / HEALTH_EVENTS_FILE
        if path.is_file():
            return path
    return None


def _kind_of_dir(path: Path) -> str | None:
    if (path / "trajectories.jsonl").is_file():
        return "eval"
    if (path / "kept.jsonl").is_file() or (path / "rejected.jsonl").is_file():
        return "sft"
    if any(_STEP_FILE.match(p.name) for p in path.iterdir() if p.is_file()):
        return "verl"
    report = path / "report.json"
    if report.is_file() and _is_learn_report(report):
        return "learn"
    if (path / HEALTH_EVENTS_FILE).is_file():
        return "health"
    return None


def _is_learn_report(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and isinstance(data.get("stages"), list)


def discover(paths: Sequence[str | os.PathLike[str]]) -> list[Source]:
    """The recognised sources under ``paths`` (files or folders, searched three levels deep).

    Raises:
        UserFacingError: a path does not exist or holds nothing the viewer reads.
    """
    found: list[Source] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UserFacingError(f"{path}: no such file or folder")
        before = len(found)
        if path.is_file():
            name = path.name
            parent = path.parent
            if name == "trajectories.jsonl":
                found.append(Source("eval", parent, _label(parent)))
            elif name in ("kept.jsonl", "rejected.jsonl"):
                found.append(Source("sft", parent, _label(parent)))
            elif _STEP_FILE.match(name):
                found.append(Source("verl", parent, _label(parent)))
            elif name.endswith(".json") and _is_learn_report(path):
                found.append(Source("learn", path, _label(parent)))
            elif name == HEALTH_EVENTS_FILE:
                found.append(Source("health", parent, _label(parent)))
        else:
            for folder, _depth in _walk(path):
                kind = _kind_of_dir(folder)
                if kind:
                    target = folder / "report.json" if kind == "learn" else folder
                    found.append(Source(kind, target, _label(folder)))
        if len(found) == before:
            raise UserFacingError(
                f"{path}: nothing to view (expected trajectories.jsonl, <step>.jsonl verl dumps, "
                f"kept/rejected.jsonl, a learning report.json or {HEALTH_EVENTS_FILE}, up to 3 folders down)"
            )
    unique: dict[tuple[str, Path], Source] = {}
    for s in found:
        unique.setdefault((s.kind, s.path.resolve()), s)
    return _unique_labels(list(unique.values()))


def _walk(root: Path) -> Iterator[tuple[Path, int]]:
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        yield folder, depth
        if depth < _MAX_SCAN_DEPTH:
            try:
                children = sorted((p for p in folder.iterdir() if p.is_dir()), reverse=True)
            except OSError:
                continue
            for child in children:
                if child.name not in (
                    "cache",
                    "checkpoints",
                    "huggingface",
                    "__pycache__",
                ) and not child.name.startswith("."):
                    stack.append((child, depth + 1))


def _label(folder: Path) -> str:
    parts = folder.resolve().parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(folder)


def _unique_labels(sources: list[Source]) -> list[Source]:
    counts = Counter(s.label for s in sources)
    out = []
    for s in sources:
        label = s.label if counts[s.label] == 1 else f"{s.label} ({s.kind})"
        out.append(Source(s.kind, s.path, label))
    return out


def load_sources(
    paths: Sequence[str | os.PathLike[str]], *, labels: Sequence[str | None] | None = None
) -> LoadResult:
    """Read every source under ``paths`` into samples (keys 0..N-1 in reading order).

    Args:
        paths: files or folders (see the module docstring).
        labels: optional run names, one per entry of ``paths`` (``None`` or no list: the last two
            folder names of each source found).

    Raises:
        UserFacingError: a path does not exist or holds nothing readable.
    """
    samples: list[Sample] = []
    reports: list[LearnReport] = []
    runs: dict[str, dict[str, Any]] = {}
    skipped: Counter[str] = Counter()
    for n, raw in enumerate(paths):
        found = discover([raw])
        for src in found:
            if labels is not None and labels[n] is not None:
                name = labels[n] if len(found) == 1 else f"{labels[n]}/{src.label}"
                src = Source(src.kind, src.path, name)
            if src.kind == "learn":
                reports.append(
                    LearnReport(src.label, src.path, json.loads(src.path.read_text(encoding="utf-8")))
                )
                continue
            info: dict[str, Any] = {"kind": src.kind, "path": str(src.path)}
            # the RL watchdog's events: the source itself, or the run a verl dump belongs to
            events = src.path / HEALTH_EVENTS_FILE if src.kind == "health" else None
            events = events or (_health_near(src.path) if src.kind == "verl" else None)
            if events is not None:
                info["health"] = {"path": str(events), "events": read_health_events(events)}
            if src.kind == "health":
                runs.setdefault(src.label, info)
                continue
            # the run's own summary next to its samples: eval's results.json, SFT's report.json
            summary = {"eval": ("results", "results.json"), "sft": ("report", "report.json")}.get(src.kind)
            if summary is not None and (src.path / summary[1]).is_file():
                try:
                    info[summary[0]] = json.loads((src.path / summary[1]).read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError):
                    skipped[f"{src.label}: unreadable {summary[1]}"] += 1
            runs.setdefault(src.label, info)
            for sample in _LOADERS[src.kind](src, skipped):
                sample.key = len(samples)
                sample.finish()
                samples.append(sample)
    for reason, count in skipped.items():
        logger.warning("skipped %d: %s", count, reason)
    return LoadResult(samples=samples, reports=reports, runs=runs, skipped=skipped)
