"""Entry of the SFT recipe: verl's ``SFTTrainer`` with our config and a process group that also
works on CPU.

Why not ``torchrun -m verl.trainer.sft_trainer`` directly: its ``run_sft`` builds the backend
string ``cpu:gloo,<device>:<ccl>``, which is ``cpu:gloo,cpu:gloo`` on the CPU platform and is
rejected by torch ("Duplicate device type cpu"). ``verl.trainer.sft_trainer_ray`` calls a bare
``ray.init()`` (no logical GPU), so verl's resource check fails on CPU. This entry initialises the
process group with the platform's backend (``gloo`` on CPU, ``cpu:gloo,cuda:nccl`` on GPUs, as
verl does) and then runs verl's own ``SFTTrainer(config).fit()``; nothing of verl's loop is copied.

Single process: ``python -m masksearch.recipes.sft_ramp <overrides>`` (the rendezvous env vars are
filled in). Several GPUs: ``torchrun --nproc_per_node=N -m masksearch.recipes.sft_ramp <overrides>``.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import hydra

CONFIG_DIR = str(Path(__file__).resolve().parent / "config")
CONFIG_NAME = "sft_ramp"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _single_process_env() -> None:
    """Rendezvous variables for a run started without torchrun (one process)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return
    os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"})
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


def process_group_backend(device_name: str, ccl_backend: str) -> str:
    """``gloo`` on CPU, else verl's ``cpu:gloo,<device>:<ccl>``.

    >>> process_group_backend("cpu", "gloo"), process_group_backend("cuda", "nccl")
    ('gloo', 'cpu:gloo,cuda:nccl')
    """
    if device_name == "cpu":
        return "gloo"
    return f"cpu:gloo,{device_name}:{ccl_backend}"


def log_step_speed(client: Any) -> None:
    """Add ``perf/time_per_step`` and ``perf/throughput`` (tokens/s) to each SFT step's metrics.

    verl's SFT trainer logs no step time (its ``train_time`` stays 0); these are the RL trainer's
    names, so SFT and the RL update can be compared from their metric files (issue 22). Wraps
    ``client.train_batch`` (the ``TrainingWorker`` the trainer calls once per step).
    """
    from verl.utils import tensordict_utils as tu

    train_batch = client.train_batch

    def timed_train_batch(data: Any) -> Any:
        start = time.perf_counter()
        output = train_batch(data=data)
        seconds = time.perf_counter() - start
        if output is not None:
            metrics = tu.get(output, "metrics")
            tokens = sum(tu.get(data, key="global_token_num"))
            metrics["perf/time_per_step"] = seconds
            metrics["perf/throughput"] = tokens / seconds if seconds > 0 else 0.0
        return output

    client.train_batch = timed_train_batch


def run_sft(config) -> None:
    import torch.distributed
    from verl.trainer.sft_trainer import SFTTrainer
    from verl.utils.device import get_device_name, get_nccl_backend, get_torch_device
    from verl.utils.distributed import destroy_global_process_group

    backend = process_group_backend(get_device_name(), get_nccl_backend())
    torch.distributed.init_process_group(backend=backend, timeout=timedelta(hours=10))
    if get_device_name() != "cpu":
        get_torch_device().set_device(int(os.environ["LOCAL_RANK"]))
    try:
        trainer = SFTTrainer(config=config)
        log_step_speed(trainer.training_client)
        trainer.fit()
    finally:
        destroy_global_process_group()


@hydra.main(config_path=CONFIG_DIR, config_name=CONFIG_NAME, version_base=None)
def _hydra_main(config) -> None:
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    run_sft(config)


def main() -> int:
    from masksearch.core.errors import UserFacingError
    from masksearch.recipes.preflight import check_torch, check_verl

    try:
        check_torch()
        check_verl()
    except UserFacingError as exc:
        print(f"masksearch: error: {exc}", file=sys.stderr)
        return 2
    import verl  # noqa: F401  (loads our plugin: CPU platform and patches)

    _single_process_env()
    _hydra_main()
    return 0
