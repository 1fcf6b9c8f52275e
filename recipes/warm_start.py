"""The warm start: the embedded SmolLM2-135M after a short SFT on rules-teacher trajectories.

Base SmolLM2-135M-Instruct never writes a tag, so RL from it (``make demo``) sees reward 0 at
every step. The warm start is the student of ``make learn``'s SFT stage, built by the very same
code (:func:`masksearch.recipes.learn.stages.stage_data` and
:func:`~masksearch.recipes.learn.stages.stage_sft`) with a recipe sized for minutes on two CPU
cores (:data:`DEFAULT_RECIPE`), then cached next to the converted model, like it built once::

    <cache_root()>/models/SmolLM2-135M-Instruct-warm-<fingerprint>/   an HF folder + warm_start.json

The fingerprint covers everything that determines the model: the base model (its path and its
files' names, sizes and modification times), the corpus's sha256, every recipe setting and
:data:`WARM_START_VERSION` (bump it when the recipe's code changes), so a changed recipe builds a
new folder instead of reusing a stale one. A build runs under a file lock (a second process waits
for the first and reuses its result), in temporary sibling folders, and appears by one rename:
a crash or a failure leaves no half model behind.

What the SFT sees is what ``make demo``'s RL runs: 1-mask RAMP rows in the prompt format
``masksearch ramp build`` writes (one-shot example), one search (top-1 passage cut to 128 tokens)
then the answer, 2 turns in 256 response tokens. That also fits ``examples/run_dapo_ramp.sh``'s
defaults (4 turns, 512 tokens), whose curriculum starts on 1-mask rows. (1-2 mask rows were tried
first: with this few SFT steps the model then searched for a "mask 2" on 1-mask rows too.) The rows
come from passages after the corpus's first :data:`SKIP_PASSAGES`, which the default RAMP builds
(``make demo``: 200 rows, ``run_dapo_ramp.sh`` and ``make learn``: 2000) never reach, so their
val rows stay held out.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from masksearch.core.atomic import apply_umask, atomic_dir, atomic_write_json
from masksearch.core.errors import UserFacingError
from masksearch.recipes.learn.main import stage_fingerprint
from masksearch.recipes.learn.settings import LearnSettings

__all__ = [
    "DEFAULT_RECIPE",
    "MARKER",
    "SKIP_PASSAGES",
    "WARM_START_KNOBS",
    "WARM_START_VERSION",
    "WarmStartRecipe",
    "warm_start_dir",
    "warm_start_path",
]

#: Bump when the way the warm start is built changes (not its settings: those are fingerprinted).
WARM_START_VERSION = 1
#: Written last into a finished warm start: what it was built from and how the build went.
MARKER = "warm_start.json"
#: The default RAMP builds read at most ~2,900 passages of the embedded corpus (2000 rows).
SKIP_PASSAGES = 4000


#: The warm start's knobs, as deltas over ``make learn``'s (:class:`LearnSettings` holds the one
#: definition and default of each; the data and SFT stages read the rest from there).
WARM_START_KNOBS: dict[str, Any] = {
    "ramp_samples": 48,  # RAMP rows built (from the passages after SKIP_PASSAGES)
    "val_fraction": 0.06,  # kept when make learn's went to 0.11: the cached warm starts stay valid
    "max_masks": 1,  # 1-mask rows, as make demo's RL
    "max_turns": 2,  # one search, then the answer
    "topk": 1,
    "max_obs_tokens": 128,
    "max_response_length": 256,
    "sft_rows": 40,  # rows the rules teacher solves; the kept ones (~36) are the SFT data
    "sft_steps": 10,  # about one epoch at LearnSettings' batch of 4
    "sft_lr": 2e-4,  # 10 steps, not 32: a larger step than make learn's 5e-5
}


@dataclass(frozen=True)
class WarmStartRecipe:
    """What a warm start is built with (all of it is fingerprinted).

    Attributes:
        settings: ``make learn``'s knobs for its data and SFT stages; the work dir and the base
            model are the build's own.
        skip_passages: the RAMP rows come from the passages after this many of the corpus.
    """

    settings: LearnSettings
    skip_passages: int = SKIP_PASSAGES

    @classmethod
    def of(cls, skip_passages: int = SKIP_PASSAGES, **knobs: Any) -> WarmStartRecipe:
        """:data:`WARM_START_KNOBS` over ``LearnSettings``' defaults, then ``knobs``."""
        return cls(replace(LearnSettings(), **{**WARM_START_KNOBS, **knobs}), skip_passages)

    def key(self) -> dict[str, Any]:
        """The knobs the data and SFT stages depend on (``make learn``'s own list), and the skip."""
        knobs = stage_fingerprint(self.settings, "sft")
        # the base model is keyed by its files instead; the eval stage's sample count trains nothing
        for name in ("model_path", "val_samples", "base_val_samples"):
            knobs.pop(name, None)
        return {"knobs": knobs, "skip_passages": self.skip_passages}

    def learn_settings(self, work_dir: Path, base_model: Path) -> LearnSettings:
        """The settings of ``make learn``'s data and SFT stages for a build in ``work_dir``."""
        return replace(self.settings, work_dir=str(work_dir), model_path=str(base_model))


#: What ``masksearch model path --warm-start`` builds: about 7 minutes on two CPU cores.
DEFAULT_RECIPE = WarmStartRecipe.of()


def _say(message: str) -> None:
    """Progress for people, on stderr: stdout carries the path (``MODEL_PATH=$(…)``)."""
    print(f"[warm-start] {message}", file=sys.stderr, flush=True)


def _model_identity(model: Path) -> dict[str, Any]:
    """A model folder as ``make`` sees it: its path and its files' names, sizes and mtimes."""
    files = sorted(p for p in model.iterdir() if p.is_file())
    return {
        "path": str(model),
        "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files],
    }


def _fingerprint(base_model: Path, corpus: Path, recipe: WarmStartRecipe) -> tuple[str, dict[str, Any]]:
    from masksearch.search_tool.corpus import file_sha256

    inputs = {
        "version": WARM_START_VERSION,
        "base_model": _model_identity(base_model),
        "corpus_sha256": file_sha256(corpus),  # the bytes, wherever the file lies
        "recipe": recipe.key(),
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return digest, inputs


def _resolve(base_model: Path | None, corpus: Path | None, cache_dir: Path | None) -> tuple[Path, Path, Path]:
    from masksearch import cache_root

    if base_model is None:
        from masksearch.engine.models import embedded_model_path

        base_model = embedded_model_path(cache_dir)
    if corpus is None:
        from masksearch.data.corpus import embedded_corpus_path

        corpus = embedded_corpus_path()
    base_model, corpus = Path(base_model).expanduser().resolve(), Path(corpus).expanduser().resolve()
    if not (base_model / "config.json").is_file():
        raise UserFacingError(f"base model {base_model}: not an HF model folder (no config.json)")
    if not corpus.is_file():
        raise UserFacingError(f"corpus {corpus}: no such file")
    return base_model, corpus, Path(cache_dir or cache_root() / "models").expanduser()


def _locate(
    base_model: Path | None, corpus: Path | None, recipe: WarmStartRecipe, cache_dir: Path | None
) -> tuple[Path, Path, Path, str, dict[str, Any]]:
    """``(folder of the warm start, base model, corpus, fingerprint, what it covers)``."""
    base_model, corpus, folder = _resolve(base_model, corpus, cache_dir)
    digest, inputs = _fingerprint(base_model, corpus, recipe)
    return folder / f"{base_model.name}-warm-{digest[:12]}", base_model, corpus, digest, inputs


def warm_start_dir(
    *,
    base_model: Path | None = None,
    corpus: Path | None = None,
    recipe: WarmStartRecipe = DEFAULT_RECIPE,
    cache_dir: Path | None = None,
) -> Path:
    """The folder the warm start of ``base_model`` on ``corpus`` with ``recipe`` has (built or not).

    ``None`` takes the embedded model / corpus; ``cache_dir`` defaults to ``<cache_root()>/models``.
    """
    return _locate(base_model, corpus, recipe, cache_dir)[0]


def warm_start_path(
    *,
    base_model: Path | None = None,
    corpus: Path | None = None,
    recipe: WarmStartRecipe = DEFAULT_RECIPE,
    cache_dir: Path | None = None,
    echo: Callable[[str], None] = _say,
) -> Path:
    """The warm start's HF folder, built first when missing (see the module docstring).

    Raises:
        UserFacingError: no base model or corpus there, a cache folder that cannot be written, or
            the teacher / SFT failed (one line each).
    """
    target, base_model, corpus, digest, inputs = _locate(base_model, corpus, recipe, cache_dir)
    if (target / MARKER).is_file():
        return target
    try:
        return _build_once(target, base_model, corpus, recipe, digest, inputs, echo)
    except OSError as exc:  # no permission, disk full: say where
        raise UserFacingError(
            f"cannot build the warm start in {target.parent}: {exc.strerror or exc}"
        ) from None


def _build_once(
    target: Path,
    base_model: Path,
    corpus: Path,
    recipe: WarmStartRecipe,
    digest: str,
    inputs: dict[str, Any],
    echo: Callable[[str], None],
) -> Path:
    """Build ``target`` under its lock unless another process did while we waited."""
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder / f".{target.name}.lock", echo):
        if (target / MARKER).is_file():  # another process built it while we waited
            return target
        _remove_leftovers(target)
        started = time.perf_counter()
        knobs = recipe.settings
        echo(
            f"building the warm start once into {target}: {base_model.name} after SFT on rules-teacher "
            f"trajectories of {knobs.sft_rows} RAMP rows, {knobs.sft_steps} steps (about 7 minutes on "
            "2 idle CPU cores; later calls reuse it)"
        )
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.work-", dir=folder))
        try:
            with atomic_dir(target) as tmp:
                summary = _build(recipe, base_model, corpus, work, tmp, echo)
                summary["wall_s"] = round(time.perf_counter() - started, 1)
                record = {"fingerprint": digest, **inputs, "corpus": str(corpus), **summary}
                atomic_write_json(tmp / MARKER, record, indent=2)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        echo(f"done in {(time.perf_counter() - started) / 60:.1f} min: {target}")
    return target


def _remove_leftovers(target: Path) -> None:
    """Temporary siblings of a build that was killed (the lock is ours: no build is using them)."""
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.work-*", f".{target.name}.old-*"):
        for leftover in target.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def _locked(lock_file: Path, echo: Callable[[str], None]) -> Iterator[None]:
    """An exclusive ``fcntl`` lock: one build per warm start at a time, the others wait for it."""
    with lock_file.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"another process is building it ({lock_file} is locked); waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(
    recipe: WarmStartRecipe,
    base_model: Path,
    corpus: Path,
    work: Path,
    out: Path,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    """``make learn``'s data and SFT stages in ``work``; the SFT model's HF files moved into ``out``."""
    from masksearch.recipes.learn import stages

    s = recipe.learn_settings(work, base_model)
    started = time.perf_counter()
    data = stages.stage_data(s, corpus=corpus, skip_passages=recipe.skip_passages)
    echo(
        f"data: BM25 index of {corpus.name} and {s.ramp_samples} RAMP rows "
        f"(masks {data['mask_num']}) in {time.perf_counter() - started:.0f}s"
    )
    started = time.perf_counter()
    echo(
        f"SFT: the rules teacher solves {s.sft_rows} rows (seconds), then {s.sft_steps} SFT steps of batch "
        f"{s.sft_batch} on CPU (most of the time; log: {work / 'sft' / 'train' / 'train.log'})"
    )
    with _step_progress(work / "sft" / "train" / "metrics.jsonl", s.sft_steps):
        sft = stages.stage_sft(s)
    teacher = sft["teacher"]
    echo(
        f"SFT: {sft['sft_rows']} trajectories kept of {teacher['items']} rows, loss "
        f"{_fmt(sft['losses'][:1])} -> {_fmt(sft['losses'][-1:])}, in {time.perf_counter() - started:.0f}s"
    )
    model = Path(sft["model"])
    for item in model.iterdir():
        os.replace(item, out / item.name)
        apply_umask(out / item.name)  # the trainer writes some files 0600: a cache others may read
    logs = out / "build"
    logs.mkdir()
    for name, source in (("teacher_report.json", work / "sft" / "rules" / "report.json"),
                         ("sft_train.log", work / "sft" / "train" / "train.log")):  # fmt: skip
        if source.is_file():
            shutil.copyfile(source, logs / name)
    return {
        "teacher": teacher,
        "sft_rows": sft["sft_rows"],
        "losses": sft["losses"],
        "mask_num": data["mask_num"],
    }


def _fmt(values: list[float]) -> str:
    return f"{values[0]:.3f}" if values else "?"


@contextlib.contextmanager
def _step_progress(metrics: Path, total: int) -> Iterator[None]:
    """A tqdm bar over the SFT steps, read from verl's file logger while the trainer runs."""
    from tqdm.auto import tqdm

    stop = threading.Event()
    bar = tqdm(total=total, desc="[warm-start] SFT steps", unit="step", file=sys.stderr)

    def poll() -> None:
        while not stop.wait(2.0):
            try:
                done = metrics.read_text(encoding="utf-8").count('"train/loss"')
            except OSError:
                continue
            if done > bar.n:
                bar.update(min(done, total) - bar.n)

    thread = threading.Thread(target=poll, name="warm-start-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.close()
