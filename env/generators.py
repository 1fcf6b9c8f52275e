"""Text generators for running the search environment outside verl (inference, eval, chat).

All of them follow :class:`TextGenerator`: ``generate(prompt, max_new_tokens, stop) ->
GenerationResult``. ``token_in`` generators take the prompt as token ids and return token ids
(exact, as in training); the others take and return text, which the runner tokenises.

- :class:`HFGenerator` -- a transformers causal LM over the one generation engine
  (``masksearch.engine``): finished rows leave the batch and waiting prompts take their place.
- :class:`OpenAIGenerator` -- any OpenAI-compatible server (``/v1/completions`` or
  ``/v1/chat/completions``), with httpx; no ``openai`` package needed.
- :class:`VLLMGenerator` -- offline vLLM, only when ``vllm`` is installed.

Stop strings are passed to every backend, but the session cuts the turn after the first stop
string anyway, so a backend that ignores them (or overshoots by a few tokens) is still correct.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from masksearch.core.logs import module_logger
from masksearch.engine.stops import restore_stop

logger = module_logger(__name__)

__all__ = [
    "GenerationError",
    "GenerationResult",
    "HFGenerator",
    "OpenAIGenerator",
    "TextGenerator",
    "VLLMGenerator",
    "vllm_available",
]


class GenerationError(RuntimeError):
    """A generator could not produce a turn (server down, bad response); one-line message."""


@dataclass
class GenerationResult:
    """One generated turn.

    Attributes:
        text: the generated text (stop string included when the turn stopped on one).
        token_ids: the generated ids (``token_in`` generators), else ``None``.
        logprobs: one log-prob per id when the backend reports them, else ``None``.
        finish_reason: ``"stop"`` (stop string), ``"eos"``, ``"length"`` or ``None`` (unknown).
    """

    text: str
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    finish_reason: str | None = None


#: A prompt: token ids (``token_in`` generators) or text.
Prompt = Sequence[int] | str
#: The chat so far, for chat-style backends (the partial assistant turn last).
Messages = list[dict[str, Any]] | None


@runtime_checkable
class TextGenerator(Protocol):
    """What the standalone runner needs from a model.

    ``messages`` is the chat so far (the partial assistant turn last, when there is one); only
    chat-style backends use it. Generators may also offer
    ``generate_batch(prompts, max_new_tokens: Sequence[int], stop) -> list[GenerationResult]``.
    """

    token_in: bool

    def generate(
        self, prompt: Prompt, max_new_tokens: int, stop: Sequence[str], *, messages: Messages = None
    ) -> GenerationResult: ...


# --------------------------------------------------------------------------- transformers
class _BatchGenerator:
    """Shared by the batched local generators: one prompt is a batch of one."""

    def generate(
        self, prompt: Prompt, max_new_tokens: int, stop: Sequence[str], *, messages: Messages = None
    ) -> GenerationResult:
        return self.generate_batch([prompt], [max_new_tokens], stop)[0]


def _per_prompt_limits(max_new_tokens: Sequence[int] | int, count: int) -> list[int]:
    return (
        [int(max_new_tokens)] * count if isinstance(max_new_tokens, int) else [int(m) for m in max_new_tokens]
    )


class HFGenerator(_BatchGenerator):
    """A transformers causal LM, an adapter over the one generation engine (``masksearch.engine``).

    A row that hits EOS, a stop string or its own token limit leaves the batch at once (costing no
    further decode steps) and the next waiting prompt takes its place, with the numerics of an
    unbatched pass. Calls from several threads (the self-evolve student, ``sft serve``) share one batch.

    Args:
        model_path: model directory or hub name (``AutoModelForCausalLM``).
        tokenizer: a tokenizer to use instead of loading one from ``model_path``.
        temperature: 0 means greedy.
        top_p: nucleus sampling when ``temperature > 0``.
        seed: seeds a private sampling generator before each batch when set (reproducible sampling;
            torch's global RNG is never touched).
        device: torch device.
        torch_dtype: e.g. ``"float32"``; default: the model's.
        max_batch_size: most rows decoded together; default: what fits a quarter of the available
            memory for the longest row of each call (``batch_size_for_memory``), at most 64.
        prefix_cache_mb: memory for the KV of finished rows, kept across calls and reused when a
            later prompt starts with the same tokens (the next turn of an episode re-sends its whole
            context); default: an eighth of the available memory, at most 4 GiB; ``0``: off.
        **model_kwargs: passed to ``from_pretrained`` (e.g. ``gguf_file``).
    """

    token_in = True
    MAX_AUTO_BATCH = 64  # beyond this a 2-core CPU gains nothing per step (benchmarks/rollout.py)

    def __init__(
        self,
        model_path: str,
        *,
        tokenizer: Any = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        device: str = "cpu",
        torch_dtype: str | None = None,
        max_batch_size: int | None = None,
        prefix_cache_mb: int | None = None,
        **model_kwargs: Any,
    ):
        import torch

        from masksearch.engine.engine import GenerationEngine, load_causal_lm
        from masksearch.engine.prefix_cache import PrefixCache

        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if prefix_cache_mb is not None and prefix_cache_mb < 0:
            raise ValueError(f"prefix_cache_mb must be >= 0, got {prefix_cache_mb}")
        self._torch = torch
        dtype = getattr(torch, torch_dtype) if torch_dtype is not None else None
        self.model, self.tokenizer = load_causal_lm(
            model_path, dtype=dtype, device=device, tokenizer=tokenizer, **model_kwargs
        )
        self.device = device
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.seed = seed
        self.max_batch_size = max_batch_size
        if prefix_cache_mb is None:
            import psutil

            budget = min(4 * 2**30, psutil.virtual_memory().available // 8)
        else:
            budget = int(prefix_cache_mb) * 2**20
        self.prefix_cache = PrefixCache(budget)
        # no generator: unseeded rows sample from torch's global RNG; seeded calls bring their own
        self.engine = GenerationEngine(
            self.model, self.tokenizer, prefix_cache=self.prefix_cache, name="hf-generator"
        )
        self.eos_token_ids, self.pad_token_id = self.engine.eos_token_ids, self.engine.pad_token_id
        self.last_decode_stats: dict[str, int] = {}  # forward passes and row-steps of the last call

    def batch_size_for(self, tokens_per_row: int) -> int:
        """Rows decoded together for rows of up to ``tokens_per_row`` tokens (prompt + new)."""
        from masksearch.engine.hf_decode import batch_size_for_memory

        if self.max_batch_size is not None:
            return self.max_batch_size
        return min(self.MAX_AUTO_BATCH, batch_size_for_memory(self.model, tokens_per_row))

    def row_spec(self, prompt: Prompt, max_new_tokens: int, stop: Sequence[str], **sampling: Any) -> Any:
        """The engine row for one prompt; ``sampling`` overrides this generator's ``temperature``,
        ``top_p`` or ``generator`` (a ``torch.Generator``) for this row only."""
        from masksearch.engine.hf_decode import RowSpec

        ids = self.tokenizer.encode(prompt, add_special_tokens=False) if isinstance(prompt, str) else prompt
        settings = {"temperature": self.temperature, "top_p": self.top_p, **sampling}
        return RowSpec([int(t) for t in ids], max(0, int(max_new_tokens)), stop=tuple(stop), **settings)

    def result(self, row: Any) -> GenerationResult:
        """A finished engine row as a :class:`GenerationResult`."""
        text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
        return GenerationResult(
            text=text, token_ids=row.tokens, logprobs=row.log_probs, finish_reason=row.finish
        )

    def generate_batch(
        self, prompts: Sequence[Prompt], max_new_tokens: Sequence[int] | int, stop: Sequence[str]
    ) -> list[GenerationResult]:
        if not prompts:
            return []
        limits = _per_prompt_limits(max_new_tokens, len(prompts))
        if len(limits) != len(prompts):
            raise ValueError(f"{len(limits)} max_new_tokens for {len(prompts)} prompts")
        # a private generator, reseeded per call: reproducible sampling that never touches (or
        # depends on) torch's global RNG, which other code in the process draws from
        generator = None if self.seed is None else self._torch.Generator(self.device).manual_seed(self.seed)
        specs = [
            self.row_spec(p, limit, stop, generator=generator)
            for p, limit in zip(prompts, limits, strict=True)
        ]
        self.engine.max_batch_size = self.batch_size_for(max(len(s.prompt_ids) for s in specs) + max(limits))
        decoder = self.engine.decoder
        before = (decoder.forward_passes, decoder.row_steps, decoder.prefilled_tokens)
        rows = [future.result() for future in self.engine.submit_many(specs)]
        self.last_decode_stats = {  # this call's share, when no other thread decodes at the same time
            "forward_passes": decoder.forward_passes - before[0],
            "row_steps": decoder.row_steps - before[1],
            "prefilled_tokens": decoder.prefilled_tokens - before[2],
        }
        return [self.result(row) for row in rows]


# --------------------------------------------------------------------------- OpenAI-compatible
class OpenAIGenerator:
    """An OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp server, TGI, OpenAI).

    ``api="completions"`` (default) sends the chat-template-rendered text to ``/v1/completions``
    and continues it exactly, turn after turn. ``api="chat"`` sends ``messages`` to
    ``/v1/chat/completions``; continuing a partial assistant turn after an observation then needs
    a server that supports ``continue_final_message`` (vLLM, SGLang).

    Args:
        url: server root (``http://host:port``) or its ``/v1`` base.
        model: the served model name.
        api_key: bearer token (``None``: none sent).
        api: ``"completions"`` or ``"chat"``.
        temperature: sampling temperature (0 = greedy).
        top_p: nucleus sampling.
        timeout_s: per-request timeout.
        extra_body: extra JSON fields for every request (server-specific options).
        http_client: an ``httpx.Client`` to use (tests, custom transports).
        retry: retry policy of the shared client (:mod:`masksearch.core.openai_client`); the
            default is one attempt, as a caller such as the SFT teacher adds its own retries.
    """

    token_in = False

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None = None,
        *,
        api: str = "completions",
        temperature: float = 0.0,
        top_p: float = 1.0,
        timeout_s: float = 120.0,
        extra_body: dict[str, Any] | None = None,
        http_client: Any = None,
        retry: Any = None,
    ):
        from masksearch.core.openai_client import OpenAIClient, RetryPolicy

        if api not in ("completions", "chat"):
            raise ValueError(f"api must be 'completions' or 'chat', got {api!r}")
        self.client = OpenAIClient(
            url,
            api_key,
            timeout_s=timeout_s,
            retry=retry or RetryPolicy(max_attempts=1),
            http_client=http_client,
        )
        self.base_url = self.client.base_url
        self.model = model
        self.api = api
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.extra_body = dict(extra_body or {})

    def close(self) -> None:
        self.client.close()

    def generate(
        self, prompt: Prompt, max_new_tokens: int, stop: Sequence[str], *, messages: Messages = None
    ) -> GenerationResult:
        from masksearch.core.openai_client import EndpointError

        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": int(max_new_tokens),
            "stop": list(stop),
            "temperature": self.temperature,
            "top_p": self.top_p,
        }
        if self.api == "completions":
            path = "/completions"
            body["prompt"] = prompt if isinstance(prompt, str) else [int(t) for t in prompt]
        else:
            if not messages:
                raise GenerationError("api='chat' needs the chat messages")
            path = "/chat/completions"
            body["messages"] = messages
            if messages[-1].get("role") == "assistant":
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        body.update(self.extra_body)
        try:
            choice = self.client.post(path, body, lambda reply: dict(reply["choices"][0]))
        except EndpointError as exc:
            raise GenerationError(str(exc)) from exc
        if self.api == "completions":
            text = choice.get("text") or ""
        else:
            text = (choice.get("message") or {}).get("content") or ""
        text, finish = restore_stop(text, list(stop), choice.get("finish_reason"), choice)
        return GenerationResult(text=text, finish_reason=finish)


# --------------------------------------------------------------------------- vLLM (optional)
def vllm_available() -> bool:
    """Whether ``vllm`` can be imported."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMGenerator(_BatchGenerator):
    """Offline vLLM (``vllm.LLM``), token-in/token-out, batched; only when vllm is installed.

    Args:
        model_path: model directory or hub name.
        temperature: 0 means greedy.
        top_p: nucleus sampling.
        **engine_kwargs: passed to ``vllm.LLM`` (e.g. ``gpu_memory_utilization``).

    Raises:
        ImportError: vllm is not installed.
    """

    token_in = True

    def __init__(
        self, model_path: str, *, temperature: float = 0.0, top_p: float = 1.0, **engine_kwargs: Any
    ):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise ImportError(
                "vllm is not installed (pip install 'masksearch[gpu]'); use HFGenerator or OpenAIGenerator"
            ) from exc
        self._sampling_params_cls = SamplingParams
        self.llm = LLM(model=model_path, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.temperature = float(temperature)
        self.top_p = float(top_p)

    def generate_batch(
        self, prompts: Sequence[Prompt], max_new_tokens: Sequence[int] | int, stop: Sequence[str]
    ) -> list[GenerationResult]:
        limits = _per_prompt_limits(max_new_tokens, len(prompts))
        params = [
            self._sampling_params_cls(
                max_tokens=max(1, m),
                stop=list(stop),
                include_stop_str_in_output=True,
                temperature=self.temperature,
                top_p=self.top_p,
                logprobs=0,
            )
            for m in limits
        ]
        inputs = [
            {"prompt": p} if isinstance(p, str) else {"prompt_token_ids": [int(t) for t in p]}
            for p in prompts
        ]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        results = []
        for out in outputs:
            completion = out.outputs[0]
            token_ids = list(completion.token_ids)
            logprobs = None
            if completion.logprobs:
                logprobs = [
                    float(step[tok].logprob)
                    for step, tok in zip(completion.logprobs, token_ids, strict=False)
                ]
            finish = completion.finish_reason
            if finish == "stop" and completion.stop_reason is None:
                finish = "eos"
            results.append(
                GenerationResult(
                    text=completion.text, token_ids=token_ids, logprobs=logprobs, finish_reason=finish
                )
            )
        return results
