"""``--model``: an HF model folder, or a verl checkpoint merged into one with verl's model merger.

verl's FSDP trainer writes ``<default_local_dir>/global_step_N/actor/`` holding one
``model_world_size_W_rank_R.pt`` shard per rank, ``fsdp_config.json`` and a ``huggingface/``
folder (config + tokenizer, no weights). :func:`resolve_model_path` accepts ``global_step_N`` or
its ``actor/`` folder, merges the shards once with verl's own merger::

    python -m verl.model_merger merge --backend fsdp --local_dir .../actor --target_dir .../actor/merged_hf

and returns the merged folder; later calls reuse it. The merge runs in a subprocess (verl prints
a lot and imports much); it writes to a temporary sibling that is renamed into place, so an
interrupted merge never leaves a folder that looks complete. When the checkpoint folder is not
writable, the merged model goes to ``$MASKSEARCH_CACHE/merged-checkpoints/<hash>/``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from masksearch.core.logs import module_logger

logger = module_logger(__name__)

__all__ = [
    "MERGED_DIRNAME",
    "CheckpointError",
    "find_fsdp_checkpoint",
    "is_hf_model_dir",
    "merge_fsdp_checkpoint",
    "resolve_model_path",
]

#: Folder (inside ``actor/``) that receives the merged HF model.
MERGED_DIRNAME = "merged_hf"
_SHARD = re.compile(r"^model_world_size_(\d+)_rank_(\d+)\.pt$")
_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class CheckpointError(RuntimeError):
    """A model path that is neither an HF folder nor a mergeable verl checkpoint; one line."""


def is_hf_model_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds an HF model: ``config.json`` and weights."""
    path = Path(path)
    return (path / "config.json").is_file() and any((path / w).is_file() for w in _WEIGHTS)


def find_fsdp_checkpoint(path: str | os.PathLike[str]) -> Path | None:
    """The ``actor/`` folder of a verl FSDP checkpoint at ``path`` (itself or ``path/actor``), else None.

    Raises:
        CheckpointError: shards are there but incomplete (missing ranks, no ``huggingface/``).
    """
    path = Path(path)
    for folder in (path, path / "actor"):
        if not folder.is_dir():
            continue
        shards = [m for m in (_SHARD.match(p.name) for p in folder.iterdir()) if m]
        if not shards:
            continue
        world = {int(m.group(1)) for m in shards}
        if len(world) != 1:
            raise CheckpointError(f"{folder}: shards of several world sizes {sorted(world)}")
        size = world.pop()
        ranks = {int(m.group(2)) for m in shards}
        if ranks != set(range(size)):
            raise CheckpointError(
                f"{folder}: missing model shards for ranks {sorted(set(range(size)) - ranks)}"
            )
        if not (folder / "huggingface" / "config.json").is_file():
            raise CheckpointError(f"{folder}: no huggingface/config.json next to the FSDP shards")
        return folder
    if (path / "actor" / "model" / "dist_ckpt").is_dir() or (path / "model" / "dist_ckpt").is_dir():
        raise CheckpointError(
            f"{path} is a Megatron checkpoint; merge it first with "
            "'python -m verl.model_merger merge --backend megatron --local_dir ... --target_dir ...'"
        )
    return None


def _merged_dir(actor: Path) -> Path:
    if os.access(actor, os.W_OK):
        return actor / MERGED_DIRNAME
    from masksearch import cache_root

    digest = hashlib.sha256(str(actor.resolve()).encode()).hexdigest()[:16]
    return cache_root() / "merged-checkpoints" / digest


def merge_fsdp_checkpoint(actor: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Merge an FSDP ``actor/`` folder into an HF folder ``target`` with ``verl.model_merger``.

    Raises:
        CheckpointError: the merger failed (its last output lines are in the message).
    """
    actor, target = Path(actor), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    command = [
        sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp",
        "--local_dir", str(actor), "--target_dir", str(tmp),
    ]  # fmt: skip
    logger.info("merging %s -> %s", actor, target)
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not is_hf_model_dir(tmp):
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
            raise CheckpointError(f"verl model merger failed on {actor} (exit {proc.returncode}): {tail}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(path: str | os.PathLike[str]) -> Path:
    """An HF model folder for ``path``: the folder itself, or the merged verl checkpoint.

    Args:
        path: an HF model folder, ``.../global_step_N`` or ``.../global_step_N/actor``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: a folder that is neither (or a merge that failed).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model path not found: {path}")
    actor = find_fsdp_checkpoint(path)
    if actor is None:
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"{path} is neither an HF model folder (config.json) nor a verl checkpoint "
                "(global_step_N[/actor] with model_world_size_*_rank_*.pt)"
            )
        return path
    merged = _merged_dir(actor)
    if is_hf_model_dir(merged):
        logger.info("reusing merged checkpoint %s", merged)
        return merged
    return merge_fsdp_checkpoint(actor, merged)
