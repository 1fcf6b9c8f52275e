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

Concurrent requests are decoded together by the one generation engine
(``masksearch.engine.engine.GenerationEngine``: left padding, attention masks, per-row position ids,
rows joining and leaving between decode steps, the prefix cache); the log-probs of a batched row
are those of an unbatched teacher-forced pass up to float rounding (the tests check it to 1e-9 with
``dtype=float64``; in fp32 the gap depends on the CPU's kernels and the batch shape, ~1e-6 for the
tiny test model). Knobs: ``actor_rollout_ref.rollout.engine_kwargs.hf.*`` (``HFRolloutOptions``;
``max_batch_size=1`` is serial). Sampling draws from the server's own generator, seeded like verl's
vLLM server (``actor_rollout_ref.rollout.seed`` + replica rank).

A *scripted policy* (``actor_rollout_ref.rollout.engine_kwargs.hf.scripted_policy=pkg.mod:fn``) replaces
sampling with forced decoding: ``fn(context: str) -> str`` writes the next turn's text, and the server
scores those tokens under the current weights exactly as it scores sampled ones. Environment and
training plumbing (masks, observations, log-prob agreement, rewards) can then be tested with a policy
that really searches, even when the model is a random tiny one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

from masksearch.core.settings import load_settings
from masksearch.engine.engine import GenerationEngine, load_causal_lm
from masksearch.engine.hf_decode import Row, RowSpec
from masksearch.engine.prefix_cache import PrefixCache

logger = logging.getLogger(__name__)

_WHERE = "actor_rollout_ref.rollout.engine_kwargs.hf"


def server_actor_name(replica_rank: int, suffix: str = "") -> str:
    """Name under which replica ``replica_rank``'s server is registered in the job's namespace."""
    job_id = ray.get_runtime_context().get_job_id()
    return f"masksearch_hf_rollout_{job_id}_{replica_rank}{suffix}"


def default_max_tokens(prompt_len: int, prompt_length: int, response_length: int) -> int:
    """vLLM's server-side default budget, reproduced: never past the trainer's total length."""
    return max(0, min(response_length, prompt_length + response_length - prompt_len))


@dataclass(frozen=True)
class HFRolloutOptions:
    """``actor_rollout_ref.rollout.engine_kwargs.hf.*``: how the server batches on CPU.

    Defaults measured on 2 cores with SmolLM2-135M (``benchmarks/rollout.py``).

    Attributes:
        max_batch_size: most rows decoded together; ``1`` is the serial path (one request at a time).
        batch_wait_ms: after the first request of an idle server arrives, wait this long for others
            before prefilling them together (verl's agent loops send a step's requests within ms).
        join_running: prefill requests that arrive while a batch decodes and merge them into it
            between decode steps, instead of waiting for the batch to finish.
        num_threads: torch intra-op threads of the server (``0``: every CPU this process may use;
            Ray gives an actor with ``num_cpus=0`` one thread otherwise).
        prefix_cache_mb: memory for the KV of finished requests, reused when a later prompt
            starts with the same tokens (the next turn of a search episode; the other samples of an
            RL group); emptied at every weight update. ``0`` prefills every prompt in full.
        scripted_policy: ``pkg.module:function`` writing turns instead of sampling (see module doc).
        dtype: torch dtype of the server's weights, KV cache and log-probs. ``float32`` (default)
            is what the trainer recomputes on CPU (``cpu_profile``); ``float64`` takes float
            rounding out of comparisons (tests: batched rows vs unbatched, vs teacher forcing).
    """

    max_batch_size: int = 32
    batch_wait_ms: float = 20.0
    join_running: bool = True
    num_threads: int = 0
    prefix_cache_mb: int = 1024
    scripted_policy: str | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        if self.prefix_cache_mb < 0:
            raise ValueError(f"prefix_cache_mb must be >= 0, got {self.prefix_cache_mb}")
        self.torch_dtype()  # a one-line error now, not when the model loads

    @classmethod
    def from_engine_kwargs(cls, engine_kwargs: Any) -> HFRolloutOptions:
        """Read ``engine_kwargs.hf`` (a dict or DictConfig); a bad key or value is a one-line error."""
        return load_settings(cls, (engine_kwargs or {}).get("hf"), _WHERE)

    def torch_dtype(self) -> torch.dtype:
        """``dtype`` as a ``torch.dtype``; a ``ValueError`` unless it names a floating-point dtype."""
        dtype = getattr(torch, str(self.dtype), None)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(
                f"dtype must name a torch floating-point dtype such as 'float32' or 'float64', got {self.dtype!r}"
            )
        return dtype


_STOP_REASONS = {"eos": "completed", "stop": "completed", "length": "length", "aborted": "aborted"}


class HFRolloutServer:
    """Token-in/token-out generation with transformers. Created by ``HFReplica`` as a Ray actor.

    Concurrent ``generate`` calls are rows of one :class:`GenerationEngine` (see
    ``HFRolloutOptions``); each request keeps its own budget, stop strings and sampling parameters,
    and leaves the batch as soon as it is done. ``stop_reason`` is ``"completed"`` (EOS or a stop
    string), ``"length"`` (budget reached) or ``"aborted"`` (``abort_all_requests``; the tokens
    generated until then are returned, as vLLM does, so verl's client can resume them).

    Sampled rows draw from the server's own ``torch.Generator``, seeded with ``seed`` (``None``: a
    random seed); torch's global RNG is neither used nor changed, so what the server samples does
    not depend on other code in the process. ``HFReplica`` passes verl's ``rollout.seed`` plus the
    replica rank, as verl's vLLM server does.
    """

    def __init__(
        self,
        model_path: str,
        prompt_length: int,
        response_length: int,
        trust_remote_code: bool = False,
        scripted_policy: str | None = None,
        options: HFRolloutOptions | dict[str, Any] | None = None,
        seed: int | None = None,
    ):
        if not isinstance(options, HFRolloutOptions):
            options = HFRolloutOptions.from_engine_kwargs({"hf": options or {}})
        if scripted_policy is not None:
            options = dataclasses.replace(options, scripted_policy=scripted_policy)
        threads = int(options.num_threads) or len(os.sched_getaffinity(0))
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        self.model_path = model_path
        self.prompt_length = prompt_length
        self.response_length = response_length
        # fp32 by default: the trainer recomputes log-probs in fp32 on CPU (cpu_profile), bf16 would widen the gap
        self.model, self.tokenizer = load_causal_lm(
            model_path, dtype=options.torch_dtype(), trust_remote_code=trust_remote_code
        )
        self.global_steps = 0
        self.num_requests = 0
        self.scripted_policy = (
            load_scripted_policy(options.scripted_policy) if options.scripted_policy else None
        )
        if self.scripted_policy is not None:
            logger.warning(
                "hf rollout: scripted policy %s replaces sampling (its turns are scored under the current weights)",
                options.scripted_policy,
            )
        self.prefix_cache = PrefixCache(int(options.prefix_cache_mb) * 2**20)
        self.generator = torch.Generator()  # used by the decoding thread only
        self.generator.seed() if seed is None else self.generator.manual_seed(int(seed))
        batching = {key: getattr(options, key) for key in ("max_batch_size", "batch_wait_ms", "join_running")}
        engine_args = {"prefix_cache": self.prefix_cache, "generator": self.generator, **batching}
        self.engine = GenerationEngine(self.model, self.tokenizer, name="hf-rollout-decoder", **engine_args)
        self.options = options
        self.eos_token_ids, self.batch_sizes = self.engine.eos_token_ids, self.engine.batch_sizes
        self._gate: asyncio.Event | None = None  # closed by abort_all_requests until resume_generation
        self._rejecting = False
        logger.info("hf rollout: %s threads=%d seed=%d", options, threads, self.generator.initial_seed())

    # ----------------------------------------------------------------- requests
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
        while self._gate is not None:  # after abort_all_requests until resume_generation (vLLM's gate)
            if self._rejecting:
                return self._output([], [], "aborted")
            await self._gate.wait()
        spec = self._row_spec(list(prompt_ids), dict(sampling_params))
        row: Row = await asyncio.wrap_future(self.engine.submit(spec, request_id))
        self.num_requests += 1
        return self._output(row.tokens, row.log_probs, _STOP_REASONS[row.finish])

    def _output(self, token_ids: list[int], log_probs: list[float], stop_reason: str) -> TokenOutput:
        extra_fields = {"global_steps": self.global_steps}
        return TokenOutput(
            token_ids=token_ids, log_probs=log_probs, stop_reason=stop_reason, extra_fields=extra_fields
        )

    def _row_spec(self, prompt_ids: list[int], params: dict[str, Any]) -> RowSpec:
        max_tokens = params.get("max_tokens", params.get("max_new_tokens"))
        if max_tokens is None:
            max_tokens = default_max_tokens(len(prompt_ids), self.prompt_length, self.response_length)
        stop = params.get("stop") or ()
        if isinstance(stop, str):
            stop = (stop,)
        forced = None
        if self.scripted_policy is not None:  # the script's turn, scored instead of sampled
            context = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
            forced = self.tokenizer.encode(self.scripted_policy(context), add_special_tokens=False)
        return RowSpec(
            prompt_ids=prompt_ids,
            max_tokens=max(0, int(max_tokens)),
            temperature=max(0.0, float(params.get("temperature", 1.0))),
            top_k=int(params.get("top_k", -1) or -1),
            top_p=float(params.get("top_p", 1.0) or 1.0),
            repetition_penalty=float(params.get("repetition_penalty", 1.0) or 1.0),
            stop=tuple(stop),
            forced=forced,
        )

    # ----------------------------------------------------------------- weights and lifecycle
    async def update_weights(
        self, state_dict: dict[str, torch.Tensor], global_steps: int | None = None
    ) -> int:
        """Load the trainer's full (HF-named) weights; returns how many tensors were loaded."""
        own = self.model.state_dict()
        unknown = [name for name in state_dict if name not in own]
        if unknown:
            raise KeyError(f"weights not in the rollout model {self.model_path}: {unknown[:5]}")

        def load():
            with self.engine.model_lock:
                self.prefix_cache.clear()  # KV computed with the old weights
                return self.model.load_state_dict(state_dict, strict=False)

        result = await run_on_fresh_thread(load, name="hf-rollout-weights")
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
        return {"num_requests": self.num_requests, "global_steps": self.global_steps, **self.engine.stats()}

    async def abort_all_requests(self, reject_request: bool = False) -> dict[str, Any]:
        """Return every waiting and decoding request now, as ``"aborted"`` with its tokens so far.

        Like vLLM, new requests then wait until ``resume_generation`` (or, with
        ``reject_request=True``, come back aborted at once).
        """
        if self._gate is None:
            self._gate = asyncio.Event()
        self._rejecting = bool(reject_request)
        victims = self.engine.abort_all()
        await asyncio.gather(*(asyncio.wrap_future(r.future) for r in victims), return_exceptions=True)
        if victims:
            logger.info("hf rollout: aborted %d requests", len(victims))
        return {"aborted_count": len(victims), "request_ids": [r.tag for r in victims]}

    async def resume_generation(self) -> None:
        gate, self._gate, self._rejecting = self._gate, None, False
        if gate is not None:
            gate.set()

    async def _nothing_to_do(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    # Lifecycle calls verl forwards to every server. Weights live in host memory: nothing to free.
    wake_up = sleep = clear_kv_cache = release_kv_cache = resume_kv_cache = _nothing_to_do
    start_profile = stop_profile = _nothing_to_do


async def run_on_fresh_thread(fn: Callable[[], Any], name: str) -> Any:
    """Run ``fn`` (torch work) on a new thread that ends with it, without blocking the event loop.

    Not ``asyncio.to_thread``: its executor threads stay alive, and a live thread that once ran a
    parallel torch op keeps its own OpenMP (libgomp) team. With more libgomp threads than CPUs,
    libgomp stops spin-waiting between parallel regions, and every region of every decode step pays
    a futex wake-up: measured on 2 cores, batch-4 decode steps went from 44 to 65 ms per pass
    (issue 14; in the demo the server then ran at ~125% CPU instead of 200%). A thread that exits
    takes its team with it.
    """
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to the awaiting coroutine
            future.set_exception(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    value = await asyncio.wrap_future(future)
    thread.join()  # it is returning: its team is gone before the next decode step
    return value


def load_scripted_policy(spec: str) -> Callable[[str], str]:
    """``pkg.module:function`` → the callable ``function(context: str) -> str``."""
    from verl.utils.import_utils import load_extern_object

    module_name, sep, attr = spec.partition(":")
    if not sep:
        raise ValueError(f"scripted_policy must look like 'pkg.module:function', got {spec!r}")
    return load_extern_object(f"pkg://{module_name}", attr)


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
            options=HFRolloutOptions.from_engine_kwargs(self.config.engine_kwargs),
            seed=self.replica_rank + int(self.config.seed),  # verl's vLLM server seeds the same way
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
