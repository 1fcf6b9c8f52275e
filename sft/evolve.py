"""Self-evolving distillation: synthesise → train → serve the trained model as the next teacher.

Two ways to start:

* **online** (``teacher_url``): round 1 uses the given teacher (normally the multi-agent mode
  against a large model);
* **offline** (``round0`` + ``round0_model``): round 0 is data synthesised before (e.g. by the
  rules teacher) and the model trained on it; round 1's teacher is that model.

Every later teacher is the model trained in the round before, run in process (an ``HFGenerator``
over the generation engine, shared by the synthesis threads; or, given ``serve_cmd``, served on
``127.0.0.1`` by that command, e.g. vLLM) in the search environment (``policy`` mode), sampling
``samples_per_item`` trajectories per training prompt
(``later_rounds``); the training reward keeps those with ``acc = 1`` (rejection sampling). Each
round trains the *base* student on the kept trajectories of all rounds so far (round 0's
included), so the data grows while errors of one round's model do not compound in the weights.
Output::

    out/round_1/synth/{kept,rejected}.jsonl, report.json
    out/round_1/sft.parquet, out/round_1/train/ (the trainer's folder), train_result.json
    out/evolve_report.json   one entry per round: teacher, teacher acc, kept share, mean searches,
                             losses, model, student_val (``evaluate_fn``'s metrics)

Everything is resumable: synthesis resumes per item and a round whose ``train_result.json``
names an existing model is not trained again.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from masksearch.core.atomic import atomic_write_json
from masksearch.core.logs import module_logger
from masksearch.sft.convert import write_sft_parquet
from masksearch.sft.synthesize import SynthesisConfig, synthesize

logger = module_logger(__name__)

__all__ = ["EVOLVE_REPORT", "TRAIN_RESULT", "ServedModel", "evolve", "free_port"]

EVOLVE_REPORT = "evolve_report.json"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServedModel:
    """A teacher server in a subprocess (``serve_cmd``); ``with ServedModel(...) as url: ...`` stops it after."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        name: str,
        *,
        serve_cmd: str,
        startup_s: float = 300.0,
        log_path: str | os.PathLike | None = None,
    ):
        self.log_path = Path(log_path) if log_path else None  # default: a temp file, kept for reading
        self.model_dir = str(model_dir)
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = shlex.split(serve_cmd.format(model=self.model_dir, port=self.port, name=name))
        self.startup_s = startup_s
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        import httpx

        # stderr goes to a file (a pipe nobody reads blocks the server after 64 KB); its tail is
        # shown when the server fails to start
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="masksearch-teacher-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"teacher server exited with {self.proc.returncode} (log {self.log_path}): {self.log_tail()}"
                )
            try:
                if httpx.get(self.url + "/v1/models", timeout=2.0).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise RuntimeError(
            f"teacher server did not answer on {self.url} within {self.startup_s:.0f}s "
            f"(log {self.log_path}): {self.log_tail()}"
        )

    def log_tail(self, chars: int = 1500) -> str:
        """The last ``chars`` characters of the server's stderr log, on one line."""
        try:
            text = self.log_path.read_bytes()[-chars:].decode(errors="replace") if self.log_path else ""
        except OSError:
            return ""
        return " | ".join(line for line in text.splitlines() if line.strip())

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


TRAIN_RESULT = "train_result.json"


def _trained(round_dir: Path) -> Any:
    """The result of a round trained before (resume), or ``None``."""
    from types import SimpleNamespace

    path = round_dir / TRAIN_RESULT
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    hf = Path(saved.get("model") or "")
    if not saved.get("model") or not (hf / "config.json").is_file():
        return None
    return SimpleNamespace(
        returncode=0, hf_path=hf, losses=list(saved.get("losses") or []), log_file=saved.get("log_file")
    )


def _save_trained(round_dir: Path, result: Any) -> None:
    if result.hf_path is None:
        return
    record = {"model": str(result.hf_path), "losses": list(result.losses), "log_file": str(result.log_file)}
    atomic_write_json(round_dir / TRAIN_RESULT, record, indent=2)


def evolve(
    rounds: int,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    student_model: str | os.PathLike,
    search_client: Any,
    tokenizer: Any,
    teacher_url: str | None = None,
    teacher_model: str | None = None,
    round0: Sequence[str | os.PathLike] = (),
    round0_model: str | os.PathLike | None = None,
    config: SynthesisConfig | None = None,
    train_kwargs: dict[str, Any] | None = None,
    serve_cmd: str | None = None,
    api_key: str | None = None,
    later_rounds: dict[str, Any] | None = None,
    train_fn: Callable[..., Any] | None = None,
    evaluate_fn: Callable[[Path, Path], dict[str, Any]] | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``rounds`` rounds of synthesise → train → serve; returns the per-round reports.

    Args:
        rounds: number of rounds (>= 1).
        data: RAMP / QA parquet synthesised in every round (the training prompts).
        out_dir: output folder (resumable).
        student_model: the model trained in every round (HF folder or hub id).
        search_client: retriever (``make_search_client``).
        tokenizer: the student's tokenizer.
        teacher_url, teacher_model: the round-1 teacher (online start).
        round0: synthesis folders (or ``kept.jsonl`` files) of round 0, merged into every round's
            SFT data (offline start).
        round0_model: HF folder of the model trained on ``round0``: round 1's teacher (offline).
        config: synthesis settings of round 1 (served teachers switch to ``mode="policy"``).
        train_kwargs: keyword arguments of ``train_fn``.
        serve_cmd: command template serving ``{model}`` on ``{port}`` as ``{name}`` (default: none,
            the student runs in process; e.g. ``"vllm serve {model} --port {port} --served-model-name {name}"``).
        api_key: bearer token for the round-1 teacher.
        later_rounds: ``SynthesisConfig`` fields for served teachers (e.g. ``temperature``,
            ``samples_per_item``).
        train_fn: ``train_fn(parquet, student_model, out_dir, **train_kwargs) -> TrainResult``
            (required; the CLI passes :func:`masksearch.recipes.sft_ramp.train.train_sft`).
        evaluate_fn: ``evaluate_fn(model_dir, round_dir) -> metrics`` of each round's student on
            validation data (stored as ``student_val``); the caller picks the evaluation.
        on_round: called with each round's report.

    Raises:
        ValueError: ``rounds < 1``, or neither an online nor an offline start.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if round0_model is None and not (teacher_url and teacher_model):
        raise ValueError("give teacher_url and teacher_model (online) or round0_model (offline)")
    if train_fn is None:  # the trainer is the SFT recipe's (masksearch.recipes.sft_ramp.train)
        raise ValueError("give train_fn (the masksearch CLI passes the SFT recipe's train_sft)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or SynthesisConfig()
    served_cfg = replace(cfg, **{**(later_rounds or {}), "mode": "policy"})
    reports: list[dict[str, Any]] = []
    teacher_hf: Path | None = Path(round0_model) if round0_model is not None else None
    kept_dirs: list[Path] = [Path(p) for p in round0]
    for r in range(1, rounds + 1):
        round_dir = out / f"round_{r}"
        synth_dir = round_dir / "synth"
        started = time.perf_counter()
        if teacher_hf is None:
            model, round_cfg = str(teacher_model), cfg
            synth = synthesize(
                data, synth_dir, endpoint_url=teacher_url, model=model, search_client=search_client,
                tokenizer=tokenizer, config=round_cfg, api_key=api_key,
            )  # fmt: skip
        else:
            from masksearch.sft.serve import student_generator

            model, round_cfg = f"student-round-{r - 1}", served_cfg
            # the student runs in process, unless serve_cmd serves it (e.g. vLLM on GPUs)
            with ServedModel(teacher_hf, model, serve_cmd=serve_cmd) if serve_cmd else nullcontext() as url:
                student = (
                    None if url else student_generator(str(teacher_hf), temperature=round_cfg.temperature)
                )
                synth = synthesize(
                    data, synth_dir, endpoint_url=url, generator=student, model=model,
                    search_client=search_client, tokenizer=tokenizer, config=round_cfg,
                )  # fmt: skip
        kept_dirs.append(synth_dir)
        report: dict[str, Any] = {
            "round": r,
            "teacher": {"mode": round_cfg.mode, "model": model},
            "samples_per_item": round_cfg.samples_per_item if round_cfg.mode == "policy" else 1,
            "items": synth["items"],
            "kept": synth["kept"],
            "kept_share": synth["kept_share"],
            "teacher_acc": synth.get("teacher_acc", 0.0),
            "mean_searches": synth["mean_searches"],
            "rejection_reasons": synth["rejection_reasons"],
        }
        try:
            parquet, n_rows = write_sft_parquet(kept_dirs, round_dir / "sft.parquet")
        except ValueError:
            report["stopped"] = "no kept trajectory so far; nothing to train on"
            reports.append(report)
            break
        result = _trained(round_dir)
        if result is None:
            result = train_fn(parquet, student_model, round_dir / "train", **(train_kwargs or {}))
            _save_trained(round_dir, result)
        report.update(
            sft_rows=n_rows,
            train_returncode=result.returncode,
            train_losses=result.losses,
            model=str(result.hf_path) if result.hf_path else None,
            train_log=str(result.log_file),
        )
        if result.hf_path is not None and evaluate_fn is not None:
            report["student_val"] = evaluate_fn(Path(result.hf_path), round_dir)
        report["wall_s"] = round(time.perf_counter() - started, 2)
        reports.append(report)
        atomic_write_json(out / EVOLVE_REPORT, reports, indent=2)
        if on_round is not None:
            on_round(report)
        if result.hf_path is None:
            report["stopped"] = f"training failed (rc={result.returncode}); see {result.log_file}"
            break
        teacher_hf = Path(result.hf_path)
    atomic_write_json(out / EVOLVE_REPORT, reports, indent=2)
    return reports
