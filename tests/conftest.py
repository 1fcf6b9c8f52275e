"""Shared fixtures: offline models and a runner for verl's trainer on CPU.

No ``tests/__init__.py`` on purpose: verl's wheel installs a top-level ``tests`` package.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """A ~3M-parameter random Qwen2 with the SmolLM2 tokenizer, cached across sessions."""
    from masksearch.backends.models import build_tiny_model, cache_root

    return build_tiny_model(cache_root() / "test-models" / "tiny-qwen2-h64-l2")


@pytest.fixture(scope="session")
def embedded_tokenizer():
    from masksearch.backends.models import load_embedded_tokenizer

    return load_embedded_tokenizer()


@dataclass
class VerlRun:
    """What one ``main_ppo`` subprocess left behind, read back for assertions."""

    returncode: int
    log: str
    metrics_file: Path
    tensorboard_dir: Path
    checkpoint_dir: Path
    wall_s: float
    steps: list[dict] = field(default_factory=list)

    def metric(self, name: str) -> list[float]:
        return [row["data"][name] for row in self.steps if name in row["data"]]

    def step_numbers(self) -> list[int]:
        return [int(row["step"]) for row in self.steps]


def _read_jsonl(path: Path) -> list[dict]:
    """Complete JSON lines only: the file may be mid-write while a run is going."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and every process it started, Ray's own included.

    Ray starts its GCS and raylet in sessions of their own, so a process-group kill would leave the
    cluster (and the trainer actor, still logging) running; a crashed launcher or a lost node takes
    them all down, so that is what the tests do.
    """
    try:
        victims = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        victims = []
    for victim in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.kill()
    psutil.wait_procs(victims, timeout=30)
    proc.wait()


@pytest.fixture(scope="session")
def run_verl():
    """Run ``python -m <entry> <cpu overrides> <overrides>`` in a subprocess and collect its outputs.

    The run logs to console, tensorboard and verl's ``file`` logger (JSONL), so tests assert on the
    metrics verl itself computed.
    """
    from masksearch.backends.cpu_profile import cpu_overrides

    def run(
        workdir: Path,
        overrides: list[str],
        *,
        name: str = "run",
        entry: str = "verl.trainer.main_ppo",
        timeout: int = 900,
        env: dict[str, str] | None = None,
        on_metrics: Callable[[list[dict]], None] | None = None,
        kill_when: Callable[[list[dict]], bool] | None = None,
    ) -> VerlRun:
        workdir.mkdir(parents=True, exist_ok=True)
        metrics_file = workdir / f"{name}.metrics.jsonl"
        tensorboard_dir = workdir / "tensorboard"
        checkpoint_dir = workdir / "checkpoints"
        run_env = {
            **os.environ,
            "TENSORBOARD_DIR": str(tensorboard_dir),
            "VERL_FILE_LOGGER_PATH": str(metrics_file),
            "RAY_DEDUP_LOGS": "0",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        command = [
            sys.executable,
            "-m",
            entry,
            # the recipe entry adds its hardware profile itself
            *(cpu_overrides() if entry != "masksearch.recipes.dapo_ramp" else []),
            "trainer.logger=[console,tensorboard,file]",
            f"trainer.default_local_dir={checkpoint_dir}",
            "trainer.project_name=masksearch-tests",
            f"trainer.experiment_name={name}",
            *overrides,
        ]
        started = time.perf_counter()
        log_path = workdir / f"{name}.log"
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(
                command, cwd=workdir, env=run_env, stdout=log_file, stderr=subprocess.STDOUT
            )
            try:
                # `on_metrics` sees the steps logged so far while the run is going (e.g. to kill a server)
                while proc.poll() is None:
                    if time.perf_counter() - started > timeout:
                        proc.kill()
                        proc.wait()
                        raise TimeoutError(f"{name}: verl run exceeded {timeout}s; log: {log_path}")
                    steps = _read_jsonl(metrics_file) if (on_metrics or kill_when) else []
                    if on_metrics is not None:
                        on_metrics(steps)
                    if kill_when is not None and kill_when(steps):
                        _kill_tree(proc)  # what a crash or `kill -9` of the launcher does
                        break
                    time.sleep(0.2)
            finally:
                if proc.poll() is None:
                    _kill_tree(proc)
        log = log_path.read_text()
        return VerlRun(
            returncode=proc.returncode,
            log=log,
            metrics_file=metrics_file,
            tensorboard_dir=tensorboard_dir,
            checkpoint_dir=checkpoint_dir,
            wall_s=time.perf_counter() - started,
            steps=_read_jsonl(metrics_file),
        )

    return run
