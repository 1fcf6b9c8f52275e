"""Each verl internal we patch or rely on still has the shape we expect (fails loudly on upgrade)."""

from __future__ import annotations

import importlib
import inspect
import os
import socket

import pytest


def _source(module_name: str, attr: str | None = None) -> str:
    module = importlib.import_module(module_name)
    return inspect.getsource(getattr(module, attr) if attr else module)


class TestPatchTargetsStillExist:
    """Why each patch exists, checked against the installed verl source."""

    def test_process_group_backend_string_duplicates_cpu(self):
        src = _source("verl.utils.distributed")
        assert 'f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"' in src

    def test_engine_workers_binds_process_group_function_at_import(self):
        assert "from verl.utils.distributed import initialize_global_process_group_ray" in _source(
            "verl.workers.engine_workers"
        )

    def test_forward_only_fsdp2_engines_pin_memory(self):
        src = _source("verl.workers.engine.fsdp.transformer_impl")
        assert "CPUOffloadPolicy(pin_memory=True)" in src
        assert "from verl.utils.fsdp_utils import (\n    CPUOffloadPolicy," in src

    def test_valuehead_loader_hardcodes_flash_attention(self):
        # the module text, not the function: in this process the function is already our patch
        src = _source("verl.utils.model")
        assert "def load_valuehead_model" in src and 'attn_implementation="flash_attention_2"' in src

    def test_rollout_adapter_registry_is_a_plain_dict(self):
        from verl.workers.rollout import base

        assert isinstance(base._ROLLOUT_REGISTRY, dict)
        assert ("vllm", "async") in base._ROLLOUT_REGISTRY

    def test_engine_lookup_honours_env_override(self):
        assert 'os.getenv("VERL_ENGINE_DEVICE")' in _source("verl.workers.engine.base", "EngineRegistry")

    def test_platform_override_env(self):
        assert "VERL_PLATFORM" in _source("verl.plugin.platform.platform_manager", "_detect_platform_name")

    def test_v1_sync_trainer_hooks_we_override(self):
        from verl.trainer.ppo.v1.trainer_base import PPOTrainer

        params = list(inspect.signature(PPOTrainer._compute_metrics).parameters)
        assert params == ["self", "batch", "metrics", "timing_raw", "global_steps", "epoch"]


class TestPatchesApplied:
    def test_all_cpu_patches_and_registrations_applied(self):
        import verl.utils.distributed
        import verl.utils.fsdp_utils
        import verl.utils.model
        import verl.workers.rollout.base
        import verl.workers.rollout.replica  # noqa: F401

        from masksearch.backends.verl_compat import APPLIED

        assert set(APPLIED) >= {
            "verl.utils.distributed.initialize_global_process_group_ray",
            "verl.utils.fsdp_utils.CPUOffloadPolicy",
            "verl.utils.model.load_valuehead_model",
            "verl.workers.rollout.base._ROLLOUT_REGISTRY[hf]",
            "verl.workers.rollout.replica.RolloutReplicaRegistry[hf]",
        }

    def test_hf_rollout_resolves_through_verl_lookups(self):
        from verl.workers.rollout.base import get_rollout_class
        from verl.workers.rollout.replica import get_rollout_replica_class

        from masksearch.backends.hf_rollout import HFReplica, HFServerAdapter

        assert get_rollout_class("hf", "async") is HFServerAdapter
        assert get_rollout_replica_class("hf") is HFReplica

    def test_cpu_offload_policy_never_pins(self):
        from verl.utils.fsdp_utils import CPUOffloadPolicy

        assert CPUOffloadPolicy(pin_memory=True).pin_memory is False

    def test_masksearch_trainer_mode_registered(self):
        from verl.trainer.ppo.v1 import get_trainer_cls

        from masksearch.recipes.trainer import MaskSearchTrainer

        assert get_trainer_cls("masksearch") is MaskSearchTrainer

    def test_gloo_process_group_initialises_through_verl(self, monkeypatch):
        import torch.distributed as dist
        from verl.utils.distributed import initialize_global_process_group_ray

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        monkeypatch.setenv("DIST_INIT_METHOD", f"tcp://127.0.0.1:{port}")
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("WORLD_SIZE", "1")
        if dist.is_initialized():
            pytest.skip("a process group already exists in this test process")
        try:
            initialize_global_process_group_ray(timeout_second=30)
            assert dist.get_backend() == "gloo"
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
        assert os.environ["VERL_PLATFORM"] == "cpu"
