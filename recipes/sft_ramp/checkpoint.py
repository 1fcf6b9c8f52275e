"""SFT checkpoints as HF model folders: what the RL recipe takes as ``actor_rollout_ref.model.path``.

verl's SFT trainer saves ``<default_local_dir>/global_step_N/`` (FSDP shards, optimizer, dataloader
state) and records the last step in ``latest_checkpointed_iteration.txt``. With
``checkpoint.save_contents`` containing ``hf_model`` (the recipe's default) it also writes a full
HF model to ``global_step_N/huggingface/``; without it only the config and tokenizer are there and
the shards are merged with verl's model merger (``python -m verl.model_merger merge``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from masksearch.core.atomic import atomic_dir
from masksearch.core.logs import module_logger

logger = module_logger(__name__)

__all__ = ["TRACKER_FILE", "latest_checkpoint", "sft_checkpoint_to_hf"]

TRACKER_FILE = "latest_checkpointed_iteration.txt"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def latest_checkpoint(path: str | os.PathLike) -> Path:
    """The ``global_step_N`` folder for ``path``: itself, or the last one of a run folder.

    Raises:
        FileNotFoundError: ``path`` holds no SFT checkpoint.
    """
    root = Path(path).expanduser().resolve()
    if root.name.startswith("global_step_") and root.is_dir():
        return root
    if root.name == "huggingface" and root.parent.name.startswith("global_step_"):
        return root.parent
    tracker = root / TRACKER_FILE
    if tracker.is_file():
        step = tracker.read_text().strip()
        candidate = root / f"global_step_{step}"
        if candidate.is_dir():
            return candidate
    steps = sorted(
        (p for p in root.glob("global_step_*") if p.is_dir() and p.name.split("_")[-1].isdigit()),
        key=lambda p: int(p.name.split("_")[-1]),
    )
    if not steps:
        raise FileNotFoundError(
            f"{root}: no global_step_* checkpoint (is this the SFT run's default_local_dir?)"
        )
    return steps[-1]


def _whole_safetensors(path: Path) -> bool:
    """A safetensors file is at least its 8-byte header length, the JSON header and the data it names."""
    try:
        with path.open("rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(header_len))
    except (OSError, ValueError):
        return False
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    return path.stat().st_size >= 8 + header_len + max(ends, default=0)


def _has_weights(folder: Path) -> bool:
    """config.json plus complete weights: every shard an index names, or one whole weight file."""
    if not (folder / "config.json").is_file():
        return False
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            try:
                shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError, AttributeError):
                return False
            return bool(shards) and all(
                (folder / shard).is_file()
                and (folder / shard).stat().st_size > 0
                and (not shard.endswith(".safetensors") or _whole_safetensors(folder / shard))
                for shard in shards
            )
    weights = [p for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)]
    return bool(weights) and all(
        _whole_safetensors(p) if p.name.endswith(".safetensors") else p.stat().st_size > 0 for p in weights
    )


def sft_checkpoint_to_hf(path: str | os.PathLike, target_dir: str | os.PathLike | None = None) -> Path:
    """An HF model folder (config, weights, tokenizer) for an SFT checkpoint.

    Args:
        path: the SFT run's ``trainer.default_local_dir`` (its latest step is used), a
            ``global_step_N`` folder, or its ``huggingface`` folder.
        target_dir: where to merge FSDP shards when no full HF model was saved (default:
            ``global_step_N/huggingface_merged``).

    Returns:
        The folder to pass as ``actor_rollout_ref.model.path`` (or ``model.path`` of the next SFT).

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        RuntimeError: the merger failed (its output tail is in the message).
    """
    step_dir = latest_checkpoint(path)
    hf_dir = step_dir / "huggingface"
    if hf_dir.is_dir() and _has_weights(hf_dir):
        return hf_dir
    target = Path(target_dir) if target_dir is not None else step_dir / "huggingface_merged"
    if target.is_dir() and _has_weights(target):
        return target
    command = [
        sys.executable,
        "-m",
        "verl.model_merger",
        "merge",
        "--backend",
        "fsdp",
        "--local_dir",
        str(step_dir),
        "--target_dir",
        str(target),
    ]
    # Merge into a temporary sibling that replaces ``target`` only when every shard is there: a
    # crash mid-merge must not leave a folder that looks like a model.
    with atomic_dir(target) as tmp:
        command[command.index("--target_dir") + 1] = str(tmp)
        logger.info("merging FSDP shards: %s", " ".join(command))
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not _has_weights(tmp):
            tail = (proc.stdout + proc.stderr)[-2000:]
            raise RuntimeError(f"verl.model_merger failed for {step_dir} (rc={proc.returncode}): {tail}")
    return target
