"""Every patch of verl 0.9.1 internals that CPU training needs, in one place.

Each patch names the verl site it replaces and why; ``tests/backends`` checks that each target still
exists with the shape we patch, so a verl upgrade fails loudly there instead of deep in a run.
Patches are applied only on the CPU platform (see ``masksearch.backends.plugin``); on a machine
with an accelerator verl runs untouched.
"""

from __future__ import annotations

import functools
import logging
from types import ModuleType

from masksearch.backends.import_hooks import when_imported

logger = logging.getLogger(__name__)

APPLIED: list[str] = []


def _patch_gloo_process_group(module: ModuleType) -> None:
    """``verl/utils/distributed.py::initialize_global_process_group_ray`` builds the backend string
    ``f"cpu:gloo,{device}:{backend}"``, which is ``"cpu:gloo,cpu:gloo"`` on CPU and torch rejects
    duplicate device types. On CPU the right backend is plain ``"gloo"``.

    Applied right after ``verl.utils.distributed`` executes, so ``verl.workers.engine_workers``
    (which binds the name at import) picks up the wrapper.
    """
    original = module.initialize_global_process_group_ray
    if getattr(original, "__masksearch_patched__", False):
        return

    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or "gloo")

    initialize_global_process_group_ray.__masksearch_patched__ = True
    module.initialize_global_process_group_ray = initialize_global_process_group_ray
    APPLIED.append("verl.utils.distributed.initialize_global_process_group_ray")


def _patch_cpu_offload_pin_memory(module: ModuleType) -> None:
    """``verl/workers/engine/fsdp/transformer_impl.py`` forces ``CPUOffloadPolicy(pin_memory=True)``
    for forward-only FSDP2 engines (the reference model); pinning needs an accelerator. Replace the
    name in ``verl.utils.fsdp_utils`` (where transformer_impl imports it from) with a subclass that
    never pins.
    """
    original = module.CPUOffloadPolicy
    if original is None or getattr(original, "__masksearch_patched__", False):
        return

    class UnpinnedCPUOffloadPolicy(original):  # type: ignore[misc, valid-type]
        __masksearch_patched__ = True

        def __init__(self, pin_memory: bool = False, **kwargs) -> None:
            super().__init__(pin_memory=False, **kwargs)

    module.CPUOffloadPolicy = UnpinnedCPUOffloadPolicy
    APPLIED.append("verl.utils.fsdp_utils.CPUOffloadPolicy")


def _patch_valuehead_attention(module: ModuleType) -> None:
    """``verl/utils/model.py::load_valuehead_model`` hard-codes flash-attention 2 for the critic
    (PPO/GAE only) and falls back to trl when that fails. On CPU load it with SDPA instead.
    ``transformer_impl`` imports the function inside a method, so the module attribute suffices.
    """
    original = module.load_valuehead_model
    if getattr(original, "__masksearch_patched__", False):
        return

    def load_valuehead_model(local_path, torch_dtype, model_config, trust_remote_code):
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification.from_pretrained(
            pretrained_model_name_or_path=local_path,
            torch_dtype=torch_dtype,
            config=model_config,
            attn_implementation="sdpa",
            trust_remote_code=trust_remote_code,
        )

    load_valuehead_model.__masksearch_patched__ = True
    module.load_valuehead_model = load_valuehead_model
    APPLIED.append("verl.utils.model.load_valuehead_model")


def _register_hf_rollout_adapter(module: ModuleType) -> None:
    """``verl/workers/rollout/base.py::_ROLLOUT_REGISTRY`` is a plain dict with no register
    function; the fused actor/rollout worker looks the worker-side adapter up there by name."""
    module._ROLLOUT_REGISTRY[("hf", "async")] = "masksearch.backends.hf_rollout.HFServerAdapter"
    APPLIED.append("verl.workers.rollout.base._ROLLOUT_REGISTRY[hf]")


def _register_hf_rollout_replica(module: ModuleType) -> None:
    """The server side goes through verl's public ``RolloutReplicaRegistry.register``."""

    def load_replica():
        from masksearch.backends.hf_rollout import HFReplica

        return HFReplica

    module.RolloutReplicaRegistry.register("hf", load_replica)
    APPLIED.append("verl.workers.rollout.replica.RolloutReplicaRegistry[hf]")


def register_hf_rollout() -> None:
    """The ``hf`` rollout (transformers in a Ray actor) is additive: registered on every platform."""
    when_imported("verl.workers.rollout.base", _register_hf_rollout_adapter)
    when_imported("verl.workers.rollout.replica", _register_hf_rollout_replica)


def apply_cpu_patches() -> None:
    """Patches that only make sense without an accelerator."""
    when_imported("verl.utils.distributed", _patch_gloo_process_group)
    when_imported("verl.utils.fsdp_utils", _patch_cpu_offload_pin_memory)
    when_imported("verl.utils.model", _patch_valuehead_attention)
