"""Hydra overrides that run the SFT recipe on a CPU-only machine (the analogue of
``masksearch.backends.cpu_profile.cpu_overrides`` for ``sft_trainer_engine``).

The CPU platform and verl patches come from our ``verl.plugins`` entry point, which loads on
``import verl``; these are only the config keys.
"""

from __future__ import annotations


def sft_cpu_overrides() -> list[str]:
    """Overrides for ``python -m masksearch.recipes.sft_ramp`` with one CPU process."""
    return [
        # FSDP1 needs an accelerator device id; FSDP2 runs on CPU with gloo
        "engine.strategy=fsdp2",
        # fp32 compute: bf16 autocast on CPU is slow (`mixed_precision` is a dataclass field, hence `+`)
        "+engine.mixed_precision.param_dtype=fp32",
        "+engine.mixed_precision.reduce_dtype=fp32",
        "+engine.mixed_precision.buffer_dtype=fp32",
        # torch.compile of the log-prob kernels costs minutes on 2 cores and buys nothing on CPU
        "engine.use_torch_compile=false",
        # verl defaults to flash-attention 2 (CUDA only)
        "+model.override_config.attn_implementation=sdpa",
        # activations of a 135M model fit in RAM; recomputing them costs ~17% of each forward+backward
        # on CPU (the RL profile turned it off in issue 14; SFT still had verl's default `true`, issue 22)
        "model.enable_gradient_checkpointing=false",
        # one sequence per forward/backward: verl's default packs the whole batch (use_dynamic_bsz,
        # 8192 tokens) into one row, and CPU sdpa has no varlen kernel, so attention then spans the
        # packed row under a block-diagonal mask, quadratic in its length (4 x ~1.1k tokens: ~0.6x the
        # RL update's tokens/s, which runs one sequence per micro batch; issue 22)
        "data.use_dynamic_bsz=false",
        "trainer.device=cpu",
        "trainer.nnodes=1",
        "trainer.n_gpus_per_node=1",
        # 8 dataloader workers (verl's default) cost start-up time and RAM on small machines
        "data.num_workers=0",
    ]
