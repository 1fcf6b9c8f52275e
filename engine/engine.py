"""One generation engine: submit a row, get a future; rows join and leave one running batch.

The ``hf`` rollout server, env's ``HFGenerator`` and ``masksearch sft serve`` are adapters over
:class:`GenerationEngine`: a caller builds a :class:`~masksearch.engine.hf_decode.RowSpec` (prompt,
budget, stop strings, sampling, optionally its own ``torch.Generator``) and gets a
``concurrent.futures.Future`` of the finished row (async callers: ``asyncio.wrap_future``).

One decoding thread does all the torch work: it waits on a condition for requests, prefills those
that arrive within ``batch_wait_ms`` of the oldest together, and between decode steps drops finished
rows and admits waiting ones (``join_running``); rows with different settings share forward passes.
The thread exits after ``IDLE_EXIT_S`` without work (the next request starts another): an idle
engine holds no thread, so a dropped generator frees its model, and no idle thread keeps an OpenMP
team (more libgomp threads than CPUs stop libgomp's spin-waiting: ~1.5x slower decode steps on 2
cores, issue 14).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

import torch

from masksearch.core.logs import module_logger
from masksearch.engine.cpu_decode import register_attention
from masksearch.engine.hf_decode import BatchDecoder, Row, RowSpec
from masksearch.engine.prefix_cache import PrefixCache
from masksearch.engine.stops import find_stop_cut

logger = module_logger(__name__)

__all__ = ["GenerationEngine", "Request", "default_device", "load_causal_lm", "special_token_ids"]


def default_device() -> tuple[str, str | None]:
    """``(device, dtype)`` for a model whose caller named neither: the GPU with the checkpoint's dtype
    when there is one, else the CPU in float32 (bf16 checkpoints are slow there)."""
    return ("cuda", None) if torch.cuda.is_available() else ("cpu", "float32")


def load_causal_lm(
    model_path: str, *, dtype: Any = None, device: str = "cpu", tokenizer: Any = None, **kwargs: Any
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for the engine: eval mode, SDPA without per-step GQA expansion.

    ``kwargs`` go to both ``from_pretrained`` calls (e.g. ``trust_remote_code``, ``gguf_file``);
    ``dtype`` (a ``torch.dtype``, ``None``: the checkpoint's) to the model's only.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_path, **kwargs)
    if dtype is not None:
        kwargs["dtype"] = dtype
    kwargs.setdefault("attn_implementation", register_attention())  # the same numerics as SDPA
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs).to(device)
    return model.eval(), tokenizer


def special_token_ids(model: Any, tokenizer: Any, where: str) -> tuple[list[int], int]:
    """``(eos_token_ids, pad_token_id)``: the generation config's EOS ids, then the tokenizer's; the
    pad id is the tokenizer's, else the first EOS id (left padding is masked: any id works)."""
    eos: list[int] = []
    gen_cfg = getattr(model, "generation_config", None)
    for source in (getattr(gen_cfg, "eos_token_id", None), tokenizer.eos_token_id):
        for token_id in source if isinstance(source, list | tuple) else [source]:
            if token_id is not None and int(token_id) not in eos:
                eos.append(int(token_id))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else None)
    if pad is None:
        raise ValueError(f"{where}: tokenizer has neither a pad nor an EOS token")
    return eos, int(pad)


@dataclass(eq=False)
class Request:
    """One submitted row while it waits or decodes; ``tag`` is the caller's (e.g. a request id)."""

    spec: RowSpec
    tag: Any = None
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)
    aborted: bool = False


class GenerationEngine:
    """The running batch of one model, fed by any number of threads or event loops.

    Args:
        model, tokenizer: from :func:`load_causal_lm`.
        max_batch_size: most rows decoded together (``1``: one request at a time); may be changed
            between requests.
        batch_wait_ms: after the first request of an idle engine arrives, wait this long for others
            before prefilling them together (verl's agent loops send a step's requests within ms).
        join_running: admit requests that arrive while a batch decodes between decode steps,
            instead of waiting for the batch to finish.
        prefix_cache: KV of finished rows reused by later prompts (``None``: none).
        generator: the ``torch.Generator`` rows without their own sample from (``None``: torch's
            global one).
    """

    IDLE_EXIT_S = 1.0  # the decoding thread ends after this long without work

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int = 32,
        batch_wait_ms: float = 0.0,
        join_running: bool = True,
        prefix_cache: PrefixCache | None = None,
        generator: torch.Generator | None = None,
        name: str = "masksearch-engine",
    ):
        self.model, self.tokenizer, self.prefix_cache = model, tokenizer, prefix_cache
        self.eos_token_ids, self.pad_token_id = special_token_ids(model, tokenizer, model.name_or_path)
        self.max_batch_size, self.batch_wait_ms, self.join_running = (
            max_batch_size,
            batch_wait_ms,
            join_running,
        )
        special = (self.eos_token_ids, self.pad_token_id)
        self.decoder = BatchDecoder(
            model, tokenizer, *special, prefix_cache=prefix_cache, generator=generator
        )
        self.model_lock = threading.Lock()  # decode steps vs weight loads
        self.batch_sizes: list[int] = []  # rows per decode step, for benchmarks and tests
        self.admitted: list[int] = []  # rows per admission (one prefill call), for tests
        self.name = name
        self._cv = threading.Condition()
        self._pending: list[Request] = []
        self._inflight: set[Request] = set()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- callers
    def submit(self, spec: RowSpec, tag: Any = None) -> Future:
        """Queue one row; the future resolves to its finished :class:`Row` (or the decoding error)."""
        return self.submit_many([spec], [tag])[0]

    def submit_many(self, specs: Sequence[RowSpec], tags: Sequence[Any] | None = None) -> list[Future]:
        """Queue rows together: an idle engine admits them in one prefill (up to ``max_batch_size``)."""
        if any(spec.max_tokens > 0 and not spec.prompt_ids for spec in specs):
            raise ValueError("a prompt must have at least one token")  # here, not failing the whole batch
        requests = [Request(spec, tag) for spec, tag in zip(specs, tags or [None] * len(specs), strict=True)]
        with self._cv:
            self._pending.extend(requests)
            self._inflight.update(requests)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cv.notify()
        return [request.future for request in requests]

    def abort_all(self) -> list[Request]:
        """End every waiting and decoding request now, as ``"aborted"`` with its tokens so far;
        returns them (their futures resolve as soon as the decoding thread drops their rows)."""
        with self._cv:
            victims = list(self._inflight)
            waiting = self._take(len(self._pending))
            for request in victims:
                request.aborted = True
        for request in waiting:
            self._settle(request, Row(request.spec, tag=request, finish="aborted"))
        return victims

    def stats(self) -> dict[str, Any]:
        steps, cache = self.batch_sizes, self.prefix_cache
        return {
            "in_flight": len(self._inflight),
            "decode_steps": len(steps),
            "mean_batch_size": sum(steps) / len(steps) if steps else 0.0,
            "prefilled_tokens": self.decoder.prefilled_tokens,
            "prefix_cache_hits": getattr(cache, "hits", 0),
            "prefix_cache_reused_tokens": getattr(cache, "reused_tokens", 0),
        }

    # ----------------------------------------------------------------- decoding thread
    def _loop(self) -> None:
        while True:
            with self._cv:
                if not self._cv.wait_for(lambda: self._pending, timeout=self.IDLE_EXIT_S):
                    self._thread = None  # the next submit starts a new thread
                    return
                # collection window, counted from the oldest waiting request
                deadline = self._pending[0].arrived + self.batch_wait_ms / 1000.0
                while len(self._pending) < self.max_batch_size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cv.wait(remaining)
                batch = self._take(self.max_batch_size)
            try:
                self._run(batch)
            except BaseException as exc:  # never leave a caller waiting forever
                logger.exception("generation engine: decoding failed")
                for request in batch + [row.tag for row in self.decoder.running]:
                    self._settle(request, error=exc)
                self.decoder.remove(lambda _row: True)

    def _take(self, count: int) -> list[Request]:
        taken, self._pending = self._pending[:count], self._pending[count:]
        return taken

    def _run(self, batch: list[Request]) -> None:
        self._admit(batch)
        while self.decoder.running:
            self._settle_rows(self.decoder.remove(lambda row: row.tag.aborted))
            if not self.decoder.running:
                break
            self.batch_sizes.append(len(self.decoder.running))
            with self.model_lock:
                self._settle_rows(self.decoder.step())
            if self.join_running and len(self.decoder.running) < self.max_batch_size:
                with self._cv:
                    joining = self._take(self.max_batch_size - len(self.decoder.running))
                self._admit(joining)

    def _admit(self, requests: list[Request]) -> None:
        rows = []
        for request in requests:
            if request.aborted:
                self._settle(request, Row(request.spec, tag=request, finish="aborted"))
            elif request.spec.forced is not None:
                self._settle(request, self._forced(request))
            else:
                rows.append(Row(request.spec, tag=request))
        if rows:
            self.admitted.append(len(rows))
            with self.model_lock:
                self._settle_rows(self.decoder.add(rows))

    @torch.no_grad()
    def _forced(self, request: Request) -> Row:
        """Score ``spec.forced`` (cut at the budget, a stop string or EOS) under the current weights
        by one teacher-forced pass: the log-probs sampled tokens would get."""
        spec = request.spec
        row = Row(spec, tag=request)
        if spec.max_tokens <= 0:
            row.finish = "length"
            return row
        budget = list(spec.forced[: spec.max_tokens])
        n_keep, _stop, eos = find_stop_cut(self.tokenizer, budget, spec.stop, set(self.eos_token_ids))
        cut = budget[:n_keep]
        if eos:
            row.finish = "eos"
        elif len(cut) < len(budget) or len(cut) < spec.max_tokens:
            row.finish = "stop"  # a stop string, or the forced turn simply ended
        else:
            row.finish = "length"
        if not cut:
            return row
        temperature = spec.temperature if spec.temperature > 0 else 1.0
        ids = torch.tensor([spec.prompt_ids + cut], dtype=torch.long, device=self.decoder.device)
        with self.model_lock:
            logits = self.model(input_ids=ids).logits[0, len(spec.prompt_ids) - 1 : -1]
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # as BatchDecoder scores
        log_probs = torch.log_softmax(logits / temperature, dim=-1)
        row.tokens = cut
        row.log_probs = (
            log_probs.gather(-1, torch.tensor(cut, device=logits.device)[:, None]).squeeze(-1).tolist()
        )
        return row

    def _settle_rows(self, rows: list[Row]) -> None:
        for row in rows:
            self._settle(row.tag, row)

    def _settle(self, request: Request, row: Row | None = None, error: BaseException | None = None) -> None:
        with self._cv:
            self._inflight.discard(request)
        try:
            if error is None:
                request.future.set_result(row)
            else:
                request.future.set_exception(error)
        except InvalidStateError:  # settled before (the failure path)
            pass
