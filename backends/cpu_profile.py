"""Hydra overrides that make verl 0.9.1's default V1 trainer run on a small CPU-only machine.

Each entry says why it is needed (measured on 2 cores; see ../shared/notes/verl-cpu-fix-points.md).
The recipe's ``cpu`` profile and the end-to-end tests use this one list.
"""

from __future__ import annotations

import os

# Logical resources declared to Ray. verl's resource pools count only "GPU"/"NPU", so a CPU run
# declares one logical GPU per trainer process (CPU torch ignores the CUDA_VISIBLE_DEVICES Ray sets);
# CPUs are over-subscribed logically because TransferQueue, the rollout server and placement-group
# bundles each reserve one, and Ray would otherwise wait forever for a free slot on 2 cores.
RAY_LOGICAL_CPUS = 16


#: glibc malloc arenas per process on CPU runs (see the comment where it is set).
MALLOC_ARENA_MAX = 2


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _fp32(fsdp_config_key: str) -> list[str]:
    # `mixed_precision` is a dataclass field absent from verl's yaml: `++` adds it (or overrides it).
    return [
        f"++{fsdp_config_key}.mixed_precision.{part}_dtype=fp32" for part in ("param", "reduce", "buffer")
    ]


def cpu_overrides(
    n_procs: int = 1, ray_cpus: int = RAY_LOGICAL_CPUS, existing_cluster: bool = False
) -> list[str]:
    """Overrides for ``python -m verl.trainer.main_ppo`` on CPU with ``n_procs`` trainer processes per node.

    ``existing_cluster``: Ray was started from the shell (``ray start``, ``RAY_ADDRESS`` set); its nodes
    declare their own logical CPUs/GPUs and ``ray.init`` must not be given any.
    """
    ray_resources = (
        []
        if existing_cluster
        else [
            f"ray_kwargs.ray_init.num_cpus={ray_cpus}",
            f"++ray_kwargs.ray_init.num_gpus={n_procs}",
            # always a fresh local cluster: without it ray.init() attaches to whatever cluster a stale
            # /tmp/ray/ray_current_cluster names (and then refuses num_cpus/num_gpus)
            "++ray_kwargs.ray_init.address=local",
            # Ray gives every actor with num_cpus <= 1 one torch thread (OMP_NUM_THREADS=1); the trainer
            # and the rollout take turns in sync mode, so each may use every core (issue 14: measured
            # in the demo step profile, /tmp/notes/issue-14.md)
            f"++ray_kwargs.ray_init.runtime_env.env_vars.OMP_NUM_THREADS='{_cpu_count()}'",
            # glibc gives each new thread's allocations an arena of their own (up to 8 per core) and
            # keeps what they free: the rollout server decodes on fresh threads and reached ~11 GB RSS,
            # enough for Ray's OOM killer at the 4-mask steps of an 8-step RL run on 23 GiB (issue 22).
            # Two arenas: a 50-row eval peaked at 7.7 GB instead of 10.2 GB, same scores, 257 s vs 246 s.
            f"++ray_kwargs.ray_init.runtime_env.env_vars.MALLOC_ARENA_MAX='{MALLOC_ARENA_MAX}'",
        ]
    )
    return [
        # our transformers-in-a-Ray-actor rollout (vLLM/SGLang are GPU-only)
        "actor_rollout_ref.rollout.name=hf",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        # FSDP1 needs an accelerator device id; FSDP2 runs on CPU with gloo
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.ref.strategy=fsdp2",
        "critic.strategy=fsdp2",
        # fp32 compute in the trainer, like the rollout: bf16 autocast on CPU is slow and widens the
        # rollout-vs-trainer log-prob gap ~10^4-fold (measured 1.8e-2 vs 1e-6 mean |log ppl| diff)
        *_fp32("actor_rollout_ref.actor.fsdp_config"),
        *_fp32("actor_rollout_ref.ref.fsdp_config"),
        *_fp32("critic.fsdp"),
        # activations of a 135M model fit in RAM; recomputing them costs ~17% of each update's
        # forward+backward on CPU (issue 14: 3.0 vs 3.6 s per 700-token row on 2 cores)
        "actor_rollout_ref.model.enable_gradient_checkpointing=false",
        # old log-probs = the rollout's (verl's bypass mode, PPO-clip on pi_theta / pi_rollout): the hf
        # rollout and the trainer both run fp32 and agree to ~1e-6, so the recompute (a forward pass over
        # every sample, ~10% of a demo step) buys nothing. The bypass loss still logs rollout_corr/*
        # (trainer vs rollout) from the update's own forward pass. Set both back to recompute.
        "algorithm.rollout_correction.bypass_mode=true",
        "actor_rollout_ref.actor.policy_loss.loss_mode=bypass_mode",
        # verl defaults to flash-attention 2 (CUDA only)
        "++actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "++critic.model.override_config.attn_implementation=sdpa",
        # TransferQueue reserves one Ray CPU per storage unit (8 by default) and hangs below that
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        *ray_resources,
        f"trainer.n_gpus_per_node={n_procs}",
        "trainer.nnodes=1",
        "trainer.device=cpu",
        # worker pools sized for GPU nodes cost minutes of start-up and GBs of RAM on 2 cores
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "reward.num_workers=1",
        "data.dataloader_num_workers=0",
    ]


def gpu_overrides() -> list[str]:
    """Defaults for CUDA nodes: vLLM rollout, FSDP2, verl's bf16 mixed precision (its default)."""
    return [
        "actor_rollout_ref.rollout.name=vllm",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.6",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.ref.strategy=fsdp2",
        "actor_rollout_ref.model.enable_gradient_checkpointing=true",
        "actor_rollout_ref.model.use_remove_padding=true",
    ]
