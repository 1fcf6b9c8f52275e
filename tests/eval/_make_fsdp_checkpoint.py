"""Write a real verl FSDP checkpoint of an HF model: ``python _make_fsdp_checkpoint.py MODEL_DIR OUT_ACTOR_DIR``.

One CPU process (gloo, world size 1), the model wrapped with FSDP2 ``fully_shard`` as verl's
``fsdp2`` strategy does, saved by verl's own ``FSDPCheckpointManager`` (model shard, extra state,
``fsdp_config.json`` and the ``huggingface/`` config + tokenizer folder), i.e. the layout verl's
trainer writes under ``global_step_N/actor``.
"""

import sys

import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForCausalLM, AutoTokenizer
from verl.utils.checkpoint.fsdp_checkpoint_manager import FSDPCheckpointManager


def main(src: str, out: str) -> None:
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(src)
        fully_shard(model, mesh=init_device_mesh("cpu", (1,), mesh_dim_names=("fsdp",)))
        contents = OmegaConf.create({"save_contents": ["model", "extra"], "load_contents": ["model"]})
        manager = FSDPCheckpointManager(
            model=model,
            optimizer=None,
            lr_scheduler=None,
            processing_class=tokenizer,
            checkpoint_config=contents,
        )
        manager.save_checkpoint(out, global_step=1)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
