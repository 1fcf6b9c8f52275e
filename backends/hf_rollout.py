"""The ``hf`` rollout: transformers ``generate`` inside a Ray actor, for machines without vLLM.

verl's agent-loop rollout path talks to a rollout *server* (token-in/token-out ``generate``) and
syncs trainer weights into it through a worker-side *adapter*. vLLM, SGLang and TRT-LLM are GPU
servers; this module provides the same three pieces on top of transformers:

* ``HFRolloutServer`` — a Ray async actor holding the model; ``generate`` returns verl's
  ``TokenOutput`` with one log-prob per sampled token, computed as
  ``log_softmax(raw_logits / temperature)`` — the same quantity the trainer recomputes, so the
  rollout-vs-trainer log-prob gap measures only numerics, not a different distribution.
* ``HFReplica`` — verl's ``RolloutReplica``: launches one server per replica.
* ``HFServerAdapter`` — verl's ``BaseRollout`` in the fused actor/rollout worker: forwards the
  trainer's full weights to its replica's server after every step.

Requests are served one at a time per server: exact per-sequence numerics (no padding) matter more
for the log-prob check than throughput on a 2-core machine.

A *scripted policy* (``actor_rollout_ref.rollout.engine_kwargs.hf.scripted_policy=pkg.mod:fn``) replaces
sampling with forced decoding: ``fn(context: str) -> str`` writes the next turn's text, and the server
scores those tokens under the current weights exactly as it scores sampled ones. Environment and
training plumbing (masks, observations, log-prob agreement, rewards) can then be tested with a policy
that really searches, even when the model is a random tiny one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Generator, Iterable
from typing import Any

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

logger = logging.getLogger(__name__)


def server_actor_name(replica_rank: int, suffix: str = "") -> str:
    """Name under which replica ``replica_rank``'s server is registered in the job's namespace."""
    job_id = ray.get_runtime_context().get_job_id()
    return f"masksearch_hf_rollout_{job_id}_{replica_rank}{suffix}"


def default_max_tokens(prompt_len: int, prompt_length: int, response_length: int) -> int:
    """vLLM's server-side default budget, reproduced: never past the trainer's total length."""
    return max(0, min(response_length, prompt_length + response_length - prompt_len))


class HFRolloutServer:
    """Token-in/token-out generation with transformers. Created by ``HFReplica`` as a Ray actor."""

    def __init__(
        self,
        model_path: str,
        prompt_length: int,
        response_length: int,
        trust_remote_code: bool = False,
        scripted_policy: str | None = None,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = model_path
        self.prompt_length = prompt_length
        self.response_length = response_length
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        # fp32 on CPU: bf16 matmuls are slow there and would widen the rollout/trainer gap.
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path,
            dtype=torch.float32,
            attn_implementation="sdpa",
            trust_remote_code=trust_remote_code,
        ).eval()
        self.eos_token_ids = self._eos_ids()
        self.pad_token_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_token_ids[0]
        )
        self.global_steps = 0
        self.num_requests = 0
        self._lock = asyncio.Lock()
        self.scripted_policy = load_scripted_policy(scripted_policy) if scripted_policy else None

    def _eos_ids(self) -> list[int]:
        ids: list[int] = []
        gen_cfg = getattr(self.model, "generation_config", None)
        for source in (getattr(gen_cfg, "eos_token_id", None), self.tokenizer.eos_token_id):
            if source is None:
                continue
            for token_id in source if isinstance(source, list | tuple) else [source]:
                if token_id not in ids:
                    ids.append(int(token_id))
        if not ids:
            raise ValueError(f"{self.model_path}: tokenizer and generation config define no EOS token")
        return ids

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Any = None,
        video_data: Any = None,
        **_kwargs: Any,
    ) -> TokenOutput:
        if image_data or video_data:
            raise NotImplementedError("the hf rollout is text-only")
        async with self._lock:
            token_ids, log_probs = await asyncio.to_thread(
                self._generate, list(prompt_ids), dict(sampling_params)
            )
        self.num_requests += 1
        return TokenOutput(
            token_ids=token_ids,
            log_probs=log_probs,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps},
        )

    @torch.no_grad()
    def _generate(self, prompt_ids: list[int], params: dict[str, Any]) -> tuple[list[int], list[float]]:
        max_tokens = params.get("max_tokens", params.get("max_new_tokens"))
        if max_tokens is None:
            max_tokens = default_max_tokens(len(prompt_ids), self.prompt_length, self.response_length)
        max_tokens = int(max_tokens)
        if max_tokens <= 0:
            return [], []
        temperature = float(params.get("temperature", 1.0))
        do_sample = temperature > 0.0
        top_k = int(params.get("top_k", -1) or -1)
        top_p = float(params.get("top_p", 1.0) or 1.0)
        stop = params.get("stop") or None
        if isinstance(stop, str):
            stop = [stop]

        if self.scripted_policy is not None:
            return self._forced(prompt_ids, max_tokens, temperature if do_sample else 1.0, stop)

        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        generate_kwargs: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "do_sample": do_sample,
            "eos_token_id": self.eos_token_ids,
            "pad_token_id": self.pad_token_id,
            "output_logits": True,
            "return_dict_in_generate": True,
        }
        if do_sample:
            generate_kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k if top_k > 0 else 0)
        else:
            generate_kwargs.update(temperature=None, top_p=None, top_k=None)
        if stop:
            generate_kwargs.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        out = self.model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **generate_kwargs
        )
        new_tokens = out.sequences[0, input_ids.shape[1] :]
        logits = torch.stack(out.logits, dim=1)[0].float()  # (new_tokens, vocab), before any processor
        scale = temperature if do_sample else 1.0
        log_probs = torch.log_softmax(logits / scale, dim=-1)
        token_log_probs = log_probs.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        token_ids = new_tokens.tolist()
        # generate() stops at EOS for a single sequence; keep the EOS itself, as vLLM does.
        return token_ids, token_log_probs.tolist()

    @torch.no_grad()
    def _forced(
        self, prompt_ids: list[int], max_tokens: int, temperature: float, stop: list[str] | None
    ) -> tuple[list[int], list[float]]:
        """Score the scripted policy's continuation under the current weights (teacher forcing)."""
        context = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
        text = self.scripted_policy(context)
        token_ids = self.tokenizer.encode(text, add_special_tokens=False)[:max_tokens]
        token_ids = _cut_after_stop(token_ids, self.tokenizer, stop, self.eos_token_ids)
        if not token_ids:
            return [], []
        ids = torch.tensor([prompt_ids + token_ids], dtype=torch.long)
        logits = self.model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
        log_probs = torch.log_softmax(logits / temperature, dim=-1)
        picked = log_probs.gather(-1, torch.tensor(token_ids).unsqueeze(-1)).squeeze(-1)
        return token_ids, picked.tolist()

    async def update_weights(
        self, state_dict: dict[str, torch.Tensor], global_steps: int | None = None
    ) -> int:
        """Load the trainer's full (HF-named) weights; returns how many tensors were loaded."""
        own = self.model.state_dict()
        unknown = [name for name in state_dict if name not in own]
        if unknown:
            raise KeyError(f"weights not in the rollout model {self.model_path}: {unknown[:5]}")
        result = self.model.load_state_dict(state_dict, strict=False)
        tied = set(getattr(self.model, "_tied_weights_keys", None) or [])
        missing = [
            name for name in result.missing_keys if name not in tied and not name.endswith("lm_head.weight")
        ]
        if missing:
            logger.warning(
                "weight sync left %d rollout tensors unchanged, e.g. %s", len(missing), missing[:3]
            )
        if global_steps is not None:
            self.global_steps = int(global_steps)
        return len(state_dict)

    def stats(self) -> dict[str, Any]:
        return {"num_requests": self.num_requests, "global_steps": self.global_steps}

    # Lifecycle calls verl forwards to every server. Weights live in host memory: nothing to free.
    async def wake_up(self) -> None:
        return None

    async def sleep(self) -> None:
        return None

    async def abort_all_requests(self, reject_request: bool = False) -> None:
        return None

    async def resume_generation(self) -> None:
        return None

    async def clear_kv_cache(self) -> None:
        return None

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def start_profile(self, **_kwargs: Any) -> None:
        return None

    async def stop_profile(self) -> None:
        return None


def load_scripted_policy(spec: str):
    """``pkg.module:function`` → the callable ``function(context: str) -> str``."""
    import importlib

    module_name, sep, attr = spec.partition(":")
    if not sep:
        raise ValueError(f"scripted_policy must look like 'pkg.module:function', got {spec!r}")
    return getattr(importlib.import_module(module_name), attr)


def _cut_after_stop(token_ids: list[int], tokenizer, stop: list[str] | None, eos_ids: list[int]) -> list[int]:
    """Keep tokens up to and including the first EOS or the token that completes a stop string."""
    for position, token_id in enumerate(token_ids):
        if token_id in eos_ids:
            return token_ids[: position + 1]
        if stop:
            text = tokenizer.decode(token_ids[: position + 1], skip_special_tokens=False)
            if any(s in text for s in stop):
                return token_ids[: position + 1]
    return token_ids


def _model_local_path(model_config: Any) -> str:
    from verl.utils.fs import copy_to_local

    local = model_config.get("local_path") if hasattr(model_config, "get") else None
    return local or copy_to_local(
        model_config.path if hasattr(model_config, "path") else model_config["path"]
    )


class HFReplica(RolloutReplica):
    """One ``HFRolloutServer`` per replica, next to the fused training workers."""

    async def launch_servers(self) -> None:
        if self.world_size != 1:
            raise ValueError(
                "the hf rollout runs one process per replica: set "
                "actor_rollout_ref.rollout.tensor_model_parallel_size=1 (and data/pipeline parallel 1)"
            )
        name = server_actor_name(self.replica_rank, self.name_suffix)
        server_cls = ray.remote(HFRolloutServer)
        handle = server_cls.options(name=name, num_cpus=0, max_concurrency=self.max_concurrency).remote(
            model_path=_model_local_path(self.model_config),
            prompt_length=self.config.prompt_length,
            response_length=self.config.response_length,
            trust_remote_code=bool(self.model_config.get("trust_remote_code", False)),
            scripted_policy=(self.config.engine_kwargs or {}).get("hf", {}).get("scripted_policy"),
        )
        await handle.stats.remote()  # surfaces model-loading errors here, not at the first generate
        self.servers = [handle]
        self._server_handle = handle
        self._server_address = name


class HFServerAdapter(BaseRollout):
    """Worker-side half: pushes the trainer's weights to this rank's replica server."""

    def __init__(self, config, model_config, device_mesh, *args, **kwargs):
        super().__init__(config, model_config, device_mesh)
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        per_replica = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        self.replica_rank = rank // per_replica
        self.is_replica_leader = rank % per_replica == 0
        self._server = None

    def _server_handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None

    async def update_weights(
        self,
        weights: Generator[tuple[str, torch.Tensor], None, None] | Iterable[tuple[str, torch.Tensor]],
        wire_format: str = "named_tensors",
        **kwargs: Any,
    ) -> None:
        if wire_format != "named_tensors":
            raise NotImplementedError(f"the hf rollout accepts full named tensors only, not {wire_format!r}")
        if kwargs.get("peft_config") is not None:
            raise NotImplementedError("the hf rollout does not sync LoRA adapters; set model.lora.merge=True")
        started = time.perf_counter()
        state = {
            name: tensor.detach().to("cpu", dtype=torch.float32).contiguous() for name, tensor in weights
        }
        if not self.is_replica_leader:
            return
        await self._server_handle().update_weights.remote(state, global_steps=kwargs.get("global_steps"))
        logger.debug("synced %d tensors in %.2fs", len(state), time.perf_counter() - started)
