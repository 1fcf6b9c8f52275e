"""The watchdog's own copies of checkpoints: the candidate, the last healthy one, the rollback copy.

verl rotates its checkpoints (``trainer.max_actor_ckpt_to_keep``; the DAPO recipe keeps 1): saving
step ``N`` removes ``global_step_<N-1>/actor``. A rollback needs the last *healthy* checkpoint,
which may be several saves old, so the watchdog keeps its own copy under
``<trainer.default_local_dir>/health/``::

    health/candidate/global_step_S/   the checkpoint of the last clean step, waiting for the next step
    health/healthy/global_step_H/     the last checkpoint judged healthy (candidate + a clean step after)
    health/rollback/global_step_H/    what a rollback loads: the healthy one, its lr scaled
    health/<slot>/meta.json           {"step": S, "lr_scale": ...}

The copies are hard links of verl's files (no extra disk while verl still holds them; the data
stays when verl removes its folder), falling back to a real copy across file systems. The
rollback copy gets new optimizer and scheduler files with the learning rate multiplied, so the
rollback itself goes through verl's own ``load_checkpoint``. Worst case on disk: verl's latest
checkpoint plus three kept ones (candidate, healthy, rollback share their model files).

No verl import; torch only where optimizer files are rewritten.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["HEALTH_DIR", "CheckpointStore", "link_tree", "scale_lr_files"]

#: Folder of the kept copies inside ``trainer.default_local_dir``.
HEALTH_DIR = "health"
_SLOTS = ("candidate", "healthy", "rollback")


def link_tree(src: Path, dst: Path) -> None:
    """Copy the folder ``src`` to ``dst`` as hard links (a real copy where linking fails).

    >>> import tempfile; root = Path(tempfile.mkdtemp()); (root / "a" / "b").mkdir(parents=True)
    >>> _ = (root / "a" / "b" / "f.pt").write_text("x"); link_tree(root / "a", root / "c")
    >>> (root / "c" / "b" / "f.pt").read_text(), (root / "c" / "b" / "f.pt").stat().st_nlink
    ('x', 2)
    """
    for folder, _dirs, files in os.walk(src):
        target = dst / Path(folder).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            try:
                os.link(Path(folder) / name, target / name)
            except OSError:
                shutil.copy2(Path(folder) / name, target / name)


def scale_lr_files(actor_dir: Path, factor: float) -> float | None:
    """Multiply the learning rate saved in verl's actor checkpoint files by ``factor``; the new lr.

    verl's FSDP checkpoint holds the optimizer (``optim_world_size_W_rank_R.pt``: each param group's
    ``lr`` and ``initial_lr``) and the scheduler (``extra_state_world_size_W_rank_R.pt``:
    ``lr_scheduler.base_lrs`` and ``_last_lr``). Each file is replaced, never written in place
    (they may be hard links of verl's own files).
    """
    import torch

    new_lr = None
    for path in sorted(actor_dir.glob("optim_world_size_*_rank_*.pt")):
        state = torch.load(path, map_location="cpu", weights_only=False)
        for group in state.get("param_groups", []):
            for key in ("lr", "initial_lr"):
                if isinstance(group.get(key), int | float):
                    group[key] = group[key] * factor
            new_lr = group.get("lr", new_lr)
        _replace(path, state)
    for path in sorted(actor_dir.glob("extra_state_world_size_*_rank_*.pt")):
        state = torch.load(path, map_location="cpu", weights_only=False)
        scheduler = state.get("lr_scheduler")
        if isinstance(scheduler, dict):
            for key in ("base_lrs", "_last_lr"):
                if isinstance(scheduler.get(key), list):
                    scheduler[key] = [lr * factor for lr in scheduler[key]]
        _replace(path, state)
    return None if new_lr is None else float(new_lr)


def _replace(path: Path, state: Any) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    path.unlink()
    tmp.rename(path)


class CheckpointStore:
    """The three kept copies (see the module docstring) of one run folder."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.root = self.run_dir / HEALTH_DIR

    def _slot(self, name: str) -> Path:
        return self.root / name

    def meta(self, slot: str) -> dict[str, Any] | None:
        """``meta.json`` of a slot (``step``, ``lr_scale``), None when the slot is empty."""
        try:
            data = json.loads((self._slot(slot) / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        folder = self.folder(slot, data.get("step"))
        return data if isinstance(data, dict) and folder is not None and folder.is_dir() else None

    def step(self, slot: str) -> int | None:
        meta = self.meta(slot)
        return int(meta["step"]) if meta else None

    def folder(self, slot: str, step: int | None = None) -> Path | None:
        if step is None:
            meta = self.meta(slot)
            if meta is None:
                return None
            step = int(meta["step"])
        return self._slot(slot) / f"global_step_{int(step)}"

    def clear(self, slot: str) -> None:
        shutil.rmtree(self._slot(slot), ignore_errors=True)

    def stage(self, step: int, lr_scale: float) -> Path:
        """Link verl's ``global_step_<step>`` as the candidate."""
        source = self.run_dir / f"global_step_{step}"
        self.clear("candidate")
        target = self._slot("candidate") / source.name
        link_tree(source, target)
        self._write_meta("candidate", {"step": step, "lr_scale": lr_scale})
        return target

    def promote(self) -> int | None:
        """The candidate becomes the healthy checkpoint (the previous healthy one is removed)."""
        if self.meta("candidate") is None:
            return None
        self.clear("healthy")
        self._slot("candidate").rename(self._slot("healthy"))
        return self.step("healthy")

    def prepare_rollback(self, lr_scale: float) -> tuple[Path, float | None]:
        """The healthy checkpoint, linked into ``rollback/`` with its lr set to ``lr_scale`` of the
        configured one; ``(folder, new lr)``."""
        meta = self.meta("healthy")
        if meta is None:
            raise FileNotFoundError(f"no healthy checkpoint under {self.root}")
        step = int(meta["step"])
        self.clear("rollback")
        target = self._slot("rollback") / f"global_step_{step}"
        link_tree(self.folder("healthy", step), target)  # type: ignore[arg-type]
        factor = lr_scale / float(meta.get("lr_scale") or 1.0)
        new_lr = scale_lr_files(target / "actor", factor)
        self._write_meta("rollback", {"step": step, "lr_scale": lr_scale, "lr": new_lr})
        return target, new_lr

    def drop_after(self, step: int) -> None:
        """Forget kept copies from steps after ``step`` (a resume to an earlier step replays them)."""
        for slot in _SLOTS:
            kept = self.step(slot)
            if kept is not None and kept > step:
                logger.info(
                    "health: dropping the kept %s checkpoint of step %d (resumed at %d)", slot, kept, step
                )
                self.clear(slot)

    def _write_meta(self, slot: str, data: dict[str, Any]) -> None:
        (self._slot(slot) / "meta.json").write_text(json.dumps(data), encoding="utf-8")
