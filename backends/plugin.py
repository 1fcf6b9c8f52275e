"""masksearch's ``verl.plugins`` entry point: imported by ``import verl`` in every process.

verl imports every module of the ``verl.plugins`` entry-point group at the end of its own
``__init__`` — in the driver, the TaskRunner, and every Ray worker — which is the one place to
register things that verl looks up by name in remote processes. This one holds only generic
support (what any verl user on a CPU machine needs); the masksearch trainer mode and agent loop
are registered by the composition root's own entry point, ``masksearch.recipes.plugin``:

* the ``hf`` rollout (transformers in a Ray actor; usable on any machine);
* on a machine with no accelerator, the CPU platform and the CPU patches of ``verl_compat``.

verl swallows exceptions raised here (it logs them at debug level), so we log our own failures at
ERROR level and record what happened in ``STATE`` for tests and ``masksearch doctor``-style checks.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

REQUIRED_VERL_VERSION = "0.9.1"
DEVICE_ENV = "MASKSEARCH_DEVICE"  # auto (default) | cpu | accelerator

STATE: dict[str, object] = {"loaded": False, "cpu": False, "error": None}


def accelerator_present() -> bool:
    """True when any platform verl knows (CUDA, NPU, ROCm) reports hardware on this host.

    Uses verl's own probes with ``use_smi_check=True`` so that a CPU-only Ray actor on a GPU node
    (where ``torch.cuda.is_available()`` is False) still counts as a GPU machine.
    """
    from verl.plugin.platform.platform_manager import PlatformRegistry

    for name in PlatformRegistry.registered_names():
        platform_cls = PlatformRegistry.get(name)
        if platform_cls is None or name == "cpu":
            continue
        try:
            if platform_cls().is_platform_available(use_smi_check=True):
                return True
        except Exception:  # a vendor probe failing means that vendor is absent
            continue
    return False


def wants_cpu() -> bool:
    choice = os.environ.get(DEVICE_ENV, "auto").strip().lower()
    if choice == "cpu":
        return True
    if choice in {"accelerator", "gpu", "cuda", "npu"}:
        return False
    explicit = os.environ.get("VERL_PLATFORM", "").strip().lower()
    if explicit:
        return explicit == "cpu"
    return not accelerator_present()


def _activate_cpu() -> None:
    os.environ.setdefault("VERL_PLATFORM", "cpu")
    # verl registers its FSDP engines for device "cuda"/"npu" only; this verl knob makes the engine
    # lookup use the CUDA entry, whose classes then run on the "cpu" platform.
    os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")

    from verl.plugin.platform import platform_manager

    from masksearch.backends import cpu_platform, verl_compat

    current = platform_manager._current_platform
    if current is not None and current.device_name != "cpu":
        platform_manager.set_platform(cpu_platform.PlatformCPU())
    verl_compat.apply_cpu_patches()


def activate() -> None:
    import verl

    if verl.__version__ != REQUIRED_VERL_VERSION:
        logger.error(
            "masksearch needs verl==%s but verl %s is installed; its patches are NOT applied. "
            "Fix: pip install verl==%s",
            REQUIRED_VERL_VERSION,
            verl.__version__,
            REQUIRED_VERL_VERSION,
        )
        STATE["error"] = f"verl {verl.__version__} != {REQUIRED_VERL_VERSION}"
        return

    from masksearch.backends import verl_compat

    verl_compat.register_hf_rollout()
    if wants_cpu():
        _activate_cpu()
        STATE["cpu"] = True
    STATE["loaded"] = True


try:
    activate()
except Exception as exc:  # verl would hide this at debug level
    STATE["error"] = repr(exc)
    logger.exception("masksearch verl plugin failed to load; CPU training will not work")
