"""Shared fixtures: offline models and a runner for verl's trainer on CPU.

No ``tests/__init__.py`` on purpose: verl's wheel installs a top-level ``tests`` package.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """``free_port()``: a free TCP port on 127.0.0.1."""
    return _free_port


@contextlib.contextmanager
def http_service(argv: list[str], health_url: str, *, timeout: float = 60.0, **popen_kwargs):
    """Run a server subprocess until its ``health_url`` answers 200; kill it (and its group) afterwards."""
    import httpx

    proc = subprocess.Popen(
        argv,
        stdout=popen_kwargs.pop("stdout", subprocess.DEVNULL),
        stderr=popen_kwargs.pop("stderr", subprocess.PIPE),
        env={**os.environ, "PYTHONUNBUFFERED": "1", **popen_kwargs.pop("env", {})},
        start_new_session=True,
        **popen_kwargs,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"{argv[:4]} exited with {proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(health_url, timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[:4]} did not answer {health_url} within {timeout:g}s")
            time.sleep(0.1)
        yield proc
    finally:
        _kill_tree(proc)


@pytest.fixture(scope="session")
def start_http_service():
    """``start_http_service(argv, health_url)``: a context manager around :func:`http_service`."""
    return http_service


# The child writes half its data, says so, then hangs until killed: the worst moment for a crash.
_HALF_THEN_HANG = """
import pathlib, sys, time
def _half_then_hang(self, data):
    with open(self, "wb") as fh:
        fh.write(data[: len(data) // 2]); fh.flush()
    print("HALF", flush=True)
    time.sleep(600)
pathlib.Path.write_bytes = _half_then_hang
"""


def _kill_mid_write(body: str, cwd: Path | None = None) -> None:
    """Run ``body`` in a child whose ``Path.write_bytes`` writes half and hangs; SIGKILL it then."""
    import signal
    import textwrap

    code = _HALF_THEN_HANG + textwrap.dedent(body)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == b"HALF", proc.stderr.read().decode()[-2000:]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def kill_mid_write():
    """``kill_mid_write(body, cwd)``: run ``body`` in a child and SIGKILL it halfway through a write."""
    return _kill_mid_write


def _trainer_overrides(reward_path: Path | str, total_steps: int) -> list[str]:
    """verl overrides every masksearch e2e run shares: the reward, the trainer mode, a checkpoint a step."""
    return [
        f"reward.custom_reward_function.path={reward_path}",
        "reward.custom_reward_function.name=compute_score",
        "trainer.v1.trainer_mode=masksearch",
        f"trainer.total_training_steps={total_steps}",
        "trainer.save_freq=1",
        "trainer.test_freq=-1",
        "trainer.val_before_train=false",
        "trainer.resume_mode=auto",
    ]


@pytest.fixture(scope="session")
def trainer_overrides():
    """``trainer_overrides(reward_path, total_steps)``: reward + masksearch trainer mode, saving and resuming
    every step, no validation."""
    return _trainer_overrides


def masksearch_cli(*args: str, cwd: Path) -> None:
    """Run ``masksearch <args>`` as a user would; fail the test with its stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "masksearch.cli.main", *args], cwd=cwd, capture_output=True, text=True, check=False,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="session")
def build_search_workspace():
    """``build_search_workspace(root, articles, samples)``: corpus slice, BM25 index and RAMP data via the CLI.

    Uses the embedded Wikipedia corpus, so the end-to-end tests search real passages.
    """

    def build(root: Path, *, articles: int, samples: int, val_fraction: float = 0.2) -> Path:
        masksearch_cli("corpus", "build", "--out", "corpus.jsonl", "--limit", str(articles), cwd=root)
        masksearch_cli(
            "index", "build", "--corpus", "corpus.jsonl", "--retriever", "bm25", "--out", "index", cwd=root
        )
        masksearch_cli(
            "ramp", "build", "--corpus", "corpus.jsonl", "--out", "ramp", "--num-samples", str(samples),
            "--val-fraction", str(val_fraction), "--no-one-shot", "--max-words", "80", "--no-progress", cwd=root,
        )  # fmt: skip
        return root

    return build


SCRIPTED_POLICY = (
    "+actor_rollout_ref.rollout.engine_kwargs.hf.scripted_policy=masksearch.env.scripted:search_then_answer"
)


@pytest.fixture(scope="session")
def tiny_search_overrides(tiny_model_path):
    """``tiny_search_overrides(root, max_response_length)``: the tiny model, 4 prompts x 2 rollouts, the
    scripted searching policy and the workspace's RAMP data — what every search e2e run shares."""

    def overrides(root: Path, *, max_response_length: int = 128) -> list[str]:
        return [
            f"data.train_files={root / 'ramp' / 'train.parquet'}",
            f"data.val_files={root / 'ramp' / 'val.parquet'}",
            "data.train_batch_size=4",
            "data.max_prompt_length=512",
            f"data.max_response_length={max_response_length}",
            f"actor_rollout_ref.model.path={tiny_model_path}",
            "actor_rollout_ref.rollout.n=2",
            "actor_rollout_ref.actor.ppo_mini_batch_size=4",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
            SCRIPTED_POLICY,
        ]

    return overrides


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """A ~3M-parameter random Qwen2 with the SmolLM2 tokenizer, cached across sessions."""
    from masksearch.engine.models import build_tiny_model, cache_root

    return build_tiny_model(cache_root() / "test-models" / "tiny-qwen2-h64-l2")


@pytest.fixture(scope="session")
def peaked_model_path(tiny_model_path, tmp_path_factory) -> Path:
    """The tiny model with larger random weights: its greedy continuations depend on the prompt
    (the stock random init continues every prompt with the same newline).

    Drawn from a local generator: seeding torch's global RNG here would change what every later
    test draws from it, depending on which test happened to request this fixture first (issue 21).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_path), dtype=torch.float32)
    rng = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if weight.dim() == 2:
                weight.normal_(0.0, 1.0 if "embed" in name else 10.0 / weight.shape[1] ** 0.5, generator=rng)
    out = tmp_path_factory.mktemp("peaked-tiny")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(tiny_model_path)).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def embedded_tokenizer():
    from masksearch.engine.models import load_embedded_tokenizer

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
        # a run may log into another run's file (``env``), as a resumed `make learn` stage does
        metrics_file = Path((env or {}).get("VERL_FILE_LOGGER_PATH") or workdir / f"{name}.metrics.jsonl")
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
