"""Self-evolving distillation: synthesise → train → serve the trained model as the next teacher.

Round 1 uses the given teacher (normally the multi-agent mode against a large model). Each later
round's teacher is the model trained in the round before, served on ``127.0.0.1`` by
``masksearch sft serve`` (or any command given as ``serve_cmd``, e.g. vLLM) and run in the search
environment (``policy`` mode). Each round trains the *base* student on the kept trajectories of
all rounds so far, so the data grows while errors of one round's model do not compound in the
weights. Output::

    out/round_1/synth/{kept,rejected}.jsonl, report.json
    out/round_1/sft.parquet, out/round_1/train/checkpoints/global_step_N/huggingface/
    out/evolve_report.json   one entry per round: teacher, kept share, mean searches, losses, model

Everything is resumable: synthesis resumes per item and a round whose checkpoint exists is not
trained again.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from masksearch.sft.convert import write_sft_parquet
from masksearch.sft.synthesize import SynthesisConfig, synthesize

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("MASKSEARCH_LOGGING_LEVEL", "WARN"))

__all__ = ["ServedModel", "evolve", "free_port"]

EVOLVE_REPORT = "evolve_report.json"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServedModel:
    """A teacher server in a subprocess; ``with ServedModel(...) as url: ...`` stops it after."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        name: str,
        *,
        serve_cmd: str | None = None,
        startup_s: float = 300.0,
    ):
        self.model_dir = str(model_dir)
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if serve_cmd:
            self.command = shlex.split(serve_cmd.format(model=self.model_dir, port=self.port, name=name))
        else:
            self.command = [
                sys.executable, "-m", "masksearch.sft.cli", "serve",
                "--model", self.model_dir, "--port", str(self.port), "--served-name", name,
            ]  # fmt: skip
        self.startup_s = startup_s
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        import httpx

        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode(errors="replace")[-1500:]
                raise RuntimeError(f"teacher server exited with {self.proc.returncode}: {err}")
            try:
                if httpx.get(self.url + "/v1/models", timeout=2.0).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise RuntimeError(f"teacher server did not answer on {self.url} within {self.startup_s:.0f}s")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _trained(train_dir: Path) -> Any:
    """The result of a round trained before (resume), or ``None``."""
    from masksearch.recipes.sft_ramp import sft_checkpoint_to_hf
    from masksearch.sft.train import TrainResult

    ckpt = train_dir / "checkpoints"
    if not (ckpt / "latest_checkpointed_iteration.txt").is_file():
        return None
    try:
        hf = sft_checkpoint_to_hf(ckpt)
    except (FileNotFoundError, RuntimeError):
        return None
    return TrainResult(0, ckpt, hf, train_dir / "train.log", [])


def evolve(
    rounds: int,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    teacher_url: str,
    teacher_model: str,
    student_model: str | os.PathLike,
    search_client: Any,
    tokenizer: Any,
    config: SynthesisConfig | None = None,
    train_kwargs: dict[str, Any] | None = None,
    serve_cmd: str | None = None,
    api_key: str | None = None,
    later_rounds: dict[str, Any] | None = None,
    train_fn: Callable[..., Any] | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``rounds`` rounds of synthesise → train → serve; returns the per-round reports.

    Args:
        rounds: number of rounds (>= 1).
        data: RAMP / QA parquet synthesised in every round.
        out_dir: output folder (resumable).
        teacher_url, teacher_model: the round-1 teacher.
        student_model: the model trained in every round (HF folder or hub id).
        search_client: retriever (``make_search_client``).
        tokenizer: the student's tokenizer.
        config: synthesis settings of round 1 (later rounds switch to ``mode="policy"``).
        train_kwargs: keyword arguments of :func:`masksearch.sft.train.train_sft`.
        serve_cmd: command template serving ``{model}`` on ``{port}`` as ``{name}`` (default: the
            built-in ``masksearch sft serve``; e.g. ``"vllm serve {model} --port {port} --served-model-name {name}"``).
        api_key: bearer token for the round-1 teacher.
        later_rounds: ``SynthesisConfig`` fields changed from round 2 on (e.g. ``temperature``).
        train_fn: ``train_fn(parquet, student_model, out_dir, **train_kwargs) -> TrainResult``
            (default :func:`masksearch.sft.train.train_sft`).
        on_round: called with each round's report.
    """
    from masksearch.sft.train import train_sft

    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or SynthesisConfig()
    reports: list[dict[str, Any]] = []
    teacher_hf: Path | None = None
    kept_dirs: list[Path] = []
    for r in range(1, rounds + 1):
        round_dir = out / f"round_{r}"
        synth_dir = round_dir / "synth"
        server: ServedModel | None = None
        if r == 1:
            url, model, round_cfg, key = teacher_url, teacher_model, cfg, api_key
        else:
            assert teacher_hf is not None
            server = ServedModel(teacher_hf, f"student-round-{r - 1}", serve_cmd=serve_cmd)
            url, model, round_cfg, key = (
                "",
                server.name,
                replace(cfg, **{**(later_rounds or {}), "mode": "policy"}),
                None,
            )
        started = time.perf_counter()
        if server is not None:
            with server as url:
                synth = synthesize(
                    data, synth_dir, endpoint_url=url, model=model, search_client=search_client,
                    tokenizer=tokenizer, config=round_cfg, api_key=key,
                )  # fmt: skip
        else:
            synth = synthesize(
                data, synth_dir, endpoint_url=url, model=model, search_client=search_client,
                tokenizer=tokenizer, config=round_cfg, api_key=key,
            )  # fmt: skip
        kept_dirs.append(synth_dir)
        report: dict[str, Any] = {
            "round": r,
            "teacher": {"mode": round_cfg.mode, "model": model},
            "items": synth["items"],
            "kept": synth["kept"],
            "kept_share": synth["kept_share"],
            "mean_searches": synth["mean_searches"],
            "rejection_reasons": synth["rejection_reasons"],
        }
        try:
            parquet, n_rows = write_sft_parquet(kept_dirs, round_dir / "sft.parquet")
        except ValueError:
            report["stopped"] = "no kept trajectory so far; nothing to train on"
            reports.append(report)
            break
        result = _trained(round_dir / "train") or (train_fn or train_sft)(
            parquet, student_model, round_dir / "train", **(train_kwargs or {})
        )
        report.update(
            sft_rows=n_rows,
            train_returncode=result.returncode,
            train_losses=result.losses,
            model=str(result.hf_path) if result.hf_path else None,
            train_log=str(result.log_file),
            wall_s=round(time.perf_counter() - started, 2),
        )
        reports.append(report)
        (out / EVOLVE_REPORT).write_text(json.dumps(reports, indent=2) + "\n")
        if on_round is not None:
            on_round(report)
        if result.hf_path is None:
            report["stopped"] = f"training failed (rc={result.returncode}); see {result.log_file}"
            break
        teacher_hf = result.hf_path
    (out / EVOLVE_REPORT).write_text(json.dumps(reports, indent=2) + "\n")
    return reports
