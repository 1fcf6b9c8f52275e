"""RAMP data builder: passages in, verl RL rows (train and val) out.

One sample per passage: extract candidate spans, keep the usable ones (``masking.usable_spans``),
pick a mask count, mask that many spans, and render the prompt (``prompts.ramp_messages``). The
mask count follows ``mask_mix`` by *deficit*: each passage gets, among the counts it can support,
the one furthest below its target share so far, so the built set tracks the requested mix even
though passages with few spans can only take small counts. Everything is seeded: the same corpus,
config and seed give the same rows.

``build_ramp`` is pure apart from calling the extractor; ``write_ramp`` writes the parquet files.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from masksearch.core.atomic import atomic_write_json
from masksearch.core.logs import module_logger
from masksearch.data.masking import (
    REJECT_REASONS,
    apply_masks,
    assign_splits,
    choose_spans,
    dedupe_key,
    is_malformed,
    leaked_spans,
    usable_spans,
    word_count,
)
from masksearch.data.prompts import (
    DEFAULT_AGENT_NAME,
    MASK_TOKEN,
    RAMP_TEMPLATE,
    PromptTemplate,
    ramp_messages,
)
from masksearch.data.schema import make_row, write_rows
from masksearch.data.spans import ExtractorError, Span, SpanExtractor

logger = module_logger(__name__)

DATA_SOURCE = "ramp"


class PassageLike(Protocol):
    """What the builder needs of a passage; ``masksearch.data.corpus.Passage`` fits."""

    id: str
    title: str
    text: str


@dataclass(frozen=True)
class RampConfig:
    """Everything that decides which samples are built (and so part of the determinism contract)."""

    num_samples: int | None = None  # stop after this many samples; None: the whole corpus
    min_masks: int = 1
    max_masks: int = 4
    mask_mix: tuple[float, ...] | None = None  # weights for min_masks..max_masks; None: uniform
    seed: int = 0
    min_words: int = 30
    max_words: int = 400
    val_fraction: float = 0.05
    strict: bool = False  # raise on malformed passages and extractor errors instead of counting them
    one_shot: bool = True
    show_title: bool = True
    agent_name: str = DEFAULT_AGENT_NAME
    template: PromptTemplate = RAMP_TEMPLATE
    max_consecutive_extractor_errors: int = 20

    def __post_init__(self) -> None:
        if not 1 <= self.min_masks <= self.max_masks <= 4:
            raise ValueError(f"need 1 <= min_masks <= max_masks <= 4, got {self.min_masks}..{self.max_masks}")
        if self.num_samples is not None and self.num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {self.num_samples}")
        if not 0 < self.min_words <= self.max_words:
            raise ValueError(f"need 0 < min_words <= max_words, got {self.min_words}..{self.max_words}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        n = self.max_masks - self.min_masks + 1
        mix = self.mask_mix if self.mask_mix is not None else (1.0,) * n
        if len(mix) != n or any(w < 0 for w in mix) or sum(mix) <= 0:
            raise ValueError(
                f"mask_mix needs {n} non-negative weights (for {self.min_masks}..{self.max_masks} masks) "
                f"with a positive sum, got {list(mix)}"
            )
        object.__setattr__(self, "mask_mix", tuple(w / sum(mix) for w in mix))

    def mix_for(self, k: int) -> float:
        assert self.mask_mix is not None
        return self.mask_mix[k - self.min_masks]


def parse_mask_mix(value: str) -> tuple[float, ...]:
    """``"0.4,0.3,0.2,0.1"`` -> weights (normalised later by ``RampConfig``)."""
    try:
        return tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--mask-mix must be comma-separated numbers, got {value!r}") from None


@dataclass
class RampSample:
    passage_id: str
    title: str
    text: str
    spans: list[Span]
    masked_text: str


@dataclass
class BuildSummary:
    """Counts for the summary table; ``passages_read == accepted + sum(rejected.values())``."""

    passages_read: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    per_split_mask_num: dict[str, Counter[int]] = field(
        default_factory=lambda: {"train": Counter(), "val": Counter()}
    )
    spans_dropped_as_leak: int = 0

    @property
    def accepted(self) -> int:
        return sum(sum(c.values()) for c in self.per_split_mask_num.values())

    def rejected_text(self) -> str:
        """The non-zero rejection counts, largest first: ``"too_short=3, no_span=1"`` (``"none"`` if none)."""
        counts = [(r, n) for r, n in self.rejected.most_common() if n]
        return ", ".join(f"{r}={n}" for r, n in counts) or "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passages_read": self.passages_read,
            "accepted": self.accepted,
            "rejected": {r: self.rejected.get(r, 0) for r in REJECT_REASONS},
            "mask_num": {s: dict(sorted(c.items())) for s, c in self.per_split_mask_num.items()},
            "spans_dropped_as_leak": self.spans_dropped_as_leak,
        }


@dataclass
class RampBuild:
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    summary: BuildSummary


def _passage_rng(seed: int, passage_id: str) -> random.Random:
    """Per-passage randomness, so a passage's masks do not depend on what was read before it."""
    digest = hashlib.sha256(f"{seed}\0{passage_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _pick_mask_num(
    config: RampConfig, n_usable: int, counts: Counter[int], n_accepted: int, rng: random.Random
) -> int | None:
    """The feasible mask count furthest below its target share (ties broken by ``rng``)."""
    feasible = [
        k for k in range(config.min_masks, min(config.max_masks, n_usable) + 1) if config.mix_for(k) > 0
    ]
    if not feasible:
        return None
    deficits = {k: config.mix_for(k) * (n_accepted + 1) - counts[k] for k in feasible}
    best = max(deficits.values())
    return rng.choice([k for k in feasible if deficits[k] == best])


def make_sample(
    passage: PassageLike, candidates: Iterable[Span], config: RampConfig, counts: Counter[int]
) -> tuple[RampSample | None, str | None, int]:
    """Mask one passage: ``(sample, None, n_leaks)`` or ``(None, reject_reason, n_leaks)``.

    ``counts`` holds the samples accepted so far per mask count (it steers the mask mix).
    """
    rng = _passage_rng(config.seed, passage.id)
    shown_title = passage.title if config.show_title else None
    usable, n_leaks = usable_spans(passage.text, candidates, title=shown_title)
    k = _pick_mask_num(config, len(usable), counts, sum(counts.values()), rng)
    if k is None:
        return None, ("all_spans_leak" if n_leaks else "no_span"), n_leaks
    spans = choose_spans(usable, k, rng)
    masked = apply_masks(passage.text, spans)
    leaks = leaked_spans(masked, [s.text for s in spans], title=shown_title)
    if leaks:  # cannot happen given usable_spans; kept as a guard for future rule changes
        raise AssertionError(f"passage {passage.id}: masked spans still visible: {leaks}")
    return RampSample(passage.id, passage.title, passage.text, spans, masked), None, n_leaks


def iter_samples(
    passages: Iterable[PassageLike],
    extractor: SpanExtractor,
    config: RampConfig,
    summary: BuildSummary,
    progress: Any = None,
) -> Iterator[RampSample]:
    """Accepted samples in corpus order; rejections are counted in ``summary``."""
    seen_ids: set[str] = set()
    seen_texts: set[str] = set()
    counts: Counter[int] = Counter()
    consecutive_errors = 0
    for passage in passages:
        if config.num_samples is not None and sum(counts.values()) >= config.num_samples:
            break
        summary.passages_read += 1
        reason = _precheck(passage, config, seen_ids, seen_texts)
        if reason is None:
            try:
                candidates = extractor(passage.text)
                consecutive_errors = 0
            except ExtractorError as exc:
                if config.strict:
                    raise
                consecutive_errors += 1
                logger.warning("passage %s: %s", passage.id, exc)
                if consecutive_errors >= config.max_consecutive_extractor_errors:
                    raise ExtractorError(
                        f"{consecutive_errors} extractor errors in a row; last: {exc}"
                    ) from exc
                candidates, reason = [], "extractor_error"
        if reason is None:
            sample, reason, n_leaks = make_sample(passage, candidates, config, counts)
            summary.spans_dropped_as_leak += n_leaks
            if sample is not None:
                counts[len(sample.spans)] += 1
                if progress is not None:
                    progress.update(1)
                yield sample
                continue
        summary.rejected[reason] += 1
        if progress is not None:
            progress.set_postfix(rejected=sum(summary.rejected.values()), refresh=False)


def _precheck(
    passage: PassageLike, config: RampConfig, seen_ids: set[str], seen_texts: set[str]
) -> str | None:
    if is_malformed(passage.id, passage.text):
        if config.strict:
            raise ValueError(f"malformed passage {passage.id!r}: {str(passage.text)[:80]!r}")
        return "malformed"
    key = dedupe_key(passage.text)
    if passage.id in seen_ids or key in seen_texts:
        return "duplicate"
    seen_ids.add(passage.id)
    seen_texts.add(key)
    n_words = word_count(passage.text)
    if n_words < config.min_words:
        return "too_short"
    if n_words > config.max_words:
        return "too_long"
    return None


def sample_to_row(sample: RampSample, split: str, index: int, config: RampConfig) -> dict[str, Any]:
    """A verl RL row; ``ground_truth`` lists the masked spans in mask order."""
    mask_num = len(sample.spans)
    return make_row(
        data_source=DATA_SOURCE,
        prompt=ramp_messages(
            sample.masked_text,
            mask_num,
            title=sample.title if config.show_title else None,
            one_shot=config.one_shot,
            template=config.template,
        ),
        ability="ramp",
        ground_truth=[s.text for s in sample.spans],
        extra_info={
            "mask_num": mask_num,
            "passage_id": sample.passage_id,
            "title": sample.title,
            "span_offsets": [[s.start, s.end] for s in sample.spans],
            "masked_text": sample.masked_text,
            "split": split,
            "index": index,
        },
        agent_name=config.agent_name,
    )


def build_ramp(
    passages: Iterable[PassageLike],
    extractor: SpanExtractor,
    config: RampConfig,
    *,
    show_progress: bool = False,
) -> RampBuild:
    """Build train and val rows from ``passages``; see the module docstring for the rules."""
    summary = BuildSummary()
    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=config.num_samples, desc="ramp build", unit="sample")
    try:
        samples = list(iter_samples(passages, extractor, config, summary, progress))
    finally:
        if progress is not None:
            progress.close()
    splits = assign_splits((s.passage_id for s in samples), config.val_fraction, config.seed)
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
    for sample in samples:
        split = splits[sample.passage_id]
        rows[split].append(sample_to_row(sample, split, len(rows[split]), config))
        summary.per_split_mask_num[split][len(sample.spans)] += 1
    logger.info("ramp build: %s", summary.to_dict())
    return RampBuild(train=rows["train"], val=rows["val"], summary=summary)


def write_ramp(build: RampBuild, out_dir: str | Path) -> dict[str, Path]:
    """Write ``val.parquet``, ``summary.json`` and, last, ``train.parquet`` into ``out_dir``.

    Each file is written atomically, and ``train.parquet`` last: scripts test for it to decide
    whether to rebuild, so its presence means the whole set is complete.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.parquet").unlink(missing_ok=True)  # a rebuild is complete only when it is back
    val = write_rows(build.val, out / "val.parquet")
    summary = atomic_write_json(out / "summary.json", build.summary.to_dict(), indent=2)
    train = write_rows(build.train, out / "train.parquet")
    return {"train": train, "val": val, "summary": summary}


def read_passages(path: str | Path) -> Iterator[PassageLike]:
    """Passages of a corpus file, read by ``masksearch.data.corpus.read_corpus``.

    Any format that reader accepts works (Search-R1 ``id``/``contents`` JSONL, ``id``/``title``/
    ``text`` JSONL or parquet); it raises ``CorpusError`` (a ``ValueError``) on a broken row.
    """
    from masksearch.search_tool.corpus import read_corpus

    return read_corpus(path)


__all__ = [
    "DATA_SOURCE",
    "DEFAULT_AGENT_NAME",
    "MASK_TOKEN",
    "BuildSummary",
    "RampBuild",
    "RampConfig",
    "build_ramp",
    "parse_mask_mix",
    "read_passages",
    "write_ramp",
]
