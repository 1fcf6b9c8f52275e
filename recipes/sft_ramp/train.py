"""Launch the SFT recipe (``python -m masksearch.recipes.sft_ramp``) and return the HF model.

A subprocess, so torch.distributed, Hydra and verl's globals stay out of the caller (the
``evolve`` loop trains once per round). The launch lives with the recipe; ``masksearch sft
train`` and ``masksearch sft evolve`` get :func:`train_sft` from the ``masksearch`` CLI (the
``sft`` part never imports a recipe).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from masksearch.core.jsonl import discard_parts, read_jsonl_parts, set_aside
from masksearch.core.logs import module_logger

logger = module_logger(__name__)

__all__ = ["TrainResult", "train_sft"]


@dataclass
class TrainResult:
    """Outcome of one SFT run.

    Attributes:
        returncode: the trainer's exit status.
        checkpoint_dir: ``trainer.default_local_dir``.
        hf_path: the HF model folder (``sft_checkpoint_to_hf``), ``None`` if the run failed.
        losses: ``train/loss`` per step, from verl's file logger.
        log_file: the trainer's stdout + stderr.
        tokens_per_s: ``perf/throughput`` per step (tokens of the batch / seconds of its
            forward, backward and optimizer step), the RL trainer's metric.
    """

    returncode: int
    checkpoint_dir: Path
    hf_path: Path | None
    log_file: Path
    losses: list[float] = field(default_factory=list)
    tokens_per_s: list[float] = field(default_factory=list)


def _rows(path: str | os.PathLike) -> int:
    import pyarrow.parquet as pq

    return int(pq.read_metadata(path).num_rows)


def _cpu_only() -> bool:
    import torch

    return not torch.cuda.is_available()


def train_sft(
    data: str | os.PathLike,
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    overrides: Sequence[str] = (),
    batch_size: int = 16,
    micro_batch_size: int = 2,
    epochs: int = 1,
    steps: int | None = None,
    max_length: int = 4096,
    cpu: bool | None = None,
    timeout_s: float | None = None,
) -> TrainResult:
    """Run the SFT recipe on ``data`` starting from ``model_path``.

    ``data.train_batch_size`` is clipped to the number of rows (verl drops the last incomplete
    batch, so a larger batch would mean zero steps). ``overrides`` come last and win.
    """
    from masksearch.recipes.sft_ramp import sft_checkpoint_to_hf, sft_cpu_overrides
    from masksearch.recipes.sft_ramp.checkpoint import TRACKER_FILE

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoints"
    metrics = out / "metrics.jsonl"
    log_file = out / "train.log"
    n = _rows(data)
    bsz = max(1, min(int(batch_size), n))
    mbsz = max(1, min(int(micro_batch_size), bsz))
    cpu = _cpu_only() if cpu is None else cpu
    if steps:  # verl stops at the last epoch even before total_training_steps: give it enough epochs
        epochs = max(int(epochs), -(-int(steps) // max(1, n // bsz)))
    command = [
        sys.executable,
        "-m",
        "masksearch.recipes.sft_ramp",
        *(sft_cpu_overrides() if cpu else []),
        f"data.train_files={Path(data).resolve()}",
        f"model.path={model_path}",
        f"trainer.default_local_dir={ckpt}",
        f"data.train_batch_size={bsz}",
        f"data.micro_batch_size_per_gpu={mbsz}",
        f"data.max_length={max_length}",
        f"trainer.total_epochs={epochs}",
        "trainer.logger=[console,file]",
        *([f"trainer.total_training_steps={steps}"] if steps else []),
        *overrides,
    ]
    if (ckpt / TRACKER_FILE).is_file():  # verl resumes from it and its file logger starts over:
        set_aside(metrics)  # keep the earlier attempt's steps
    else:
        discard_parts(metrics)  # a run from scratch: no earlier attempt's steps belong to it
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(metrics), "PYTHONUNBUFFERED": "1"}
    logger.info("sft train: %s", " ".join(command))
    with log_file.open("w", encoding="utf-8") as fh:
        proc = subprocess.run(
            command, cwd=out, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
        )
    rows = [row.get("data", {}) for row in read_jsonl_parts(metrics)]
    losses = [float(row["train/loss"]) for row in rows if "train/loss" in row]
    speed = [float(row["perf/throughput"]) for row in rows if "perf/throughput" in row]
    hf_path = sft_checkpoint_to_hf(ckpt) if proc.returncode == 0 else None
    return TrainResult(proc.returncode, ckpt, hf_path, log_file, losses, speed)
