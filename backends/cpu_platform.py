"""A verl device platform for machines without an accelerator.

Out of the box verl 0.9.1 falls back to the "nvidia" platform on a CPU-only machine (device "cuda",
backend NCCL) and fails at the first collective. This platform reports device "cpu" and backend
"gloo", and a ``device_module`` that stands in for ``torch.cuda`` for the calls verl makes on it.

``ray_resource_name()`` stays "GPU": verl's resource pools only count "GPU"/"NPU", so CPU runs
declare logical GPUs to Ray (``ray_kwargs.ray_init.num_gpus``); CPU torch ignores the
CUDA_VISIBLE_DEVICES that Ray sets for them.
"""

from __future__ import annotations

import contextlib
import types
from contextlib import contextmanager
from typing import Any

import psutil
import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry

PLATFORM_NAME = "cpu"


def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


class _NullStream:
    """What ``torch.cuda.Stream`` / ``current_stream`` return, for code that only waits on it."""

    def synchronize(self) -> None:
        return None

    def wait_stream(self, _other: Any) -> None:
        return None

    def wait_event(self, _event: Any) -> None:
        return None

    def record_event(self, _event: Any = None) -> _NullEvent:
        return _NullEvent()


class _NullEvent:
    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def record(self, *_args: Any) -> None:
        return None

    def synchronize(self) -> None:
        return None

    def wait(self, *_args: Any) -> None:
        return None

    def query(self) -> bool:
        return True

    def elapsed_time(self, _other: Any) -> float:
        return 0.0


def _mem_get_info(*_args: Any) -> tuple[int, int]:
    vm = psutil.virtual_memory()
    return int(vm.available), int(vm.total)


def _rss(*_args: Any, **_kwargs: Any) -> int:
    return int(psutil.Process().memory_info().rss)


def _make_device_module() -> types.ModuleType:
    """A ``torch.cuda``-shaped namespace backed by the CPU (the calls verl 0.9.1 makes)."""
    module = types.ModuleType("masksearch_cpu_device")
    module.is_available = lambda: True
    module.device_count = lambda: 1
    module.current_device = lambda: "cpu"
    module.set_device = _noop
    module.synchronize = _noop
    module.empty_cache = _noop
    module.ipc_collect = _noop
    module.set_per_process_memory_fraction = _noop
    module.manual_seed = torch.manual_seed
    module.manual_seed_all = torch.manual_seed
    module.get_rng_state = lambda *_a, **_k: torch.get_rng_state()
    module.set_rng_state = lambda state, *_a, **_k: torch.set_rng_state(state)
    module.mem_get_info = _mem_get_info
    module.memory_allocated = _rss
    module.memory_reserved = _rss
    module.max_memory_allocated = _rss
    module.max_memory_reserved = _rss
    module.reset_peak_memory_stats = _noop
    module.get_device_name = lambda *_a: "cpu"
    module.Stream = lambda *_a, **_k: _NullStream()
    module.current_stream = lambda *_a, **_k: _NullStream()
    module.stream = lambda *_a, **_k: contextlib.nullcontext()
    module.Event = _NullEvent
    return module


@PlatformRegistry.register(platform=PLATFORM_NAME)
class PlatformCPU(PlatformBase):
    """Selected only through ``VERL_PLATFORM=cpu`` (set by our plugin on machines with no accelerator)."""

    _device_module = _make_device_module()

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return self._device_module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never auto-detected: verl would otherwise pick it on GPU nodes' CPU-only actors.
        return False

    def current_device(self) -> str:  # type: ignore[override]
        # A string on purpose: torch reads an int device as an accelerator index (`model.to(0)`).
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
