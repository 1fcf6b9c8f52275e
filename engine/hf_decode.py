"""Batched decoding for a transformers causal LM: rows join and leave the batch between decode steps.

Driven by :class:`~masksearch.engine.engine.GenerationEngine` (the ``hf`` rollout server, env's
``HFGenerator`` and ``sft serve`` are adapters over it). transformers'
``generate`` keeps every row in the batch until the slowest one stops and takes one set of sampling
parameters; here each row has its own budget, stop strings and sampling parameters, a finished row
leaves the batch at once (its KV cache is dropped), and new rows may be prefilled and merged into a
running batch. Rows are left-padded; attention masks and per-row position ids keep every row's
numerics those of an unbatched forward pass (the tests check this on a float64 model, to 1e-9 against
teacher forcing, where no kernel's rounding can pass a mixed-up row off as a match).

Log-probs are ``log_softmax(raw_logits / T)`` of the chosen token (``T = 1`` for greedy rows): the
quantity verl's trainer recomputes, before top-k/top-p/repetition-penalty shaping; computed in float32,
or float64 for a float64 model. Sampled rows draw from the decoder's own ``torch.Generator`` when it
is given one, so what they sample does not depend on whoever else used torch's global RNG.

CPU-only design notes (2 cores, measured in ``benchmarks/rollout.py``): a decode step is bound by
the bytes it moves, so the cache's layers write new positions in place (``cpu_decode.GrowableLayer``
instead of ``torch.cat`` of the whole cache every step) and models loaded by the rollout and
``HFGenerator`` use ``cpu_decode.gqa_decode_attention`` (no per-step expansion of grouped KV
heads); a row joining or leaving costs one cache copy, about one decode step. Prefill is most of a multi-turn
episode's cost on CPU (every turn re-sends the whole context), so identical prompts of one call
are prefilled once and, with a :class:`~masksearch.engine.prefix_cache.PrefixCache`, a prompt
that continues a finished row prefills only its new tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from masksearch.core.logs import module_logger
from masksearch.engine.cpu_decode import growable_cache
from masksearch.engine.prefix_cache import CachedPrefix, PrefixCache
from masksearch.engine.stops import stop_in_tail

logger = module_logger(__name__)


@dataclass
class RowSpec:
    """What one row asks for. ``temperature == 0`` means greedy; ``top_k <= 0`` means no top-k.

    ``generator``: the ``torch.Generator`` this row samples from (``None``: the decoder's); rows
    sharing one draw from it in batch order. ``forced``: tokens to score instead of sampling (the
    ``hf`` rollout's scripted policy); the engine cuts them like a generated turn and scores them by
    teacher forcing, so they never enter the batch.
    """

    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    generator: Any = None
    forced: list[int] | None = None


@dataclass
class Row:
    """A row in flight: its spec, what it produced so far and why it ended (``None`` while running).

    ``finish`` is ``"eos"`` (an EOS token, kept as the last token), ``"stop"`` (the last token
    completed a stop string), ``"length"`` (``max_tokens`` reached) or ``"aborted"``.
    """

    spec: RowSpec
    tag: Any = None
    tokens: list[int] = field(default_factory=list)
    log_probs: list[float] = field(default_factory=list)
    finish: str | None = None
    position: int = 0  # real tokens in the cache = position id of the next token fed to the model
    kv_epoch: int = 0  # the prefix cache's epoch when the row was prefilled (its KV's weights)


def kv_bytes_per_token(model: Any) -> int:
    """Bytes of KV cache one token costs (all layers, keys and values) at the model's dtype."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = torch.finfo(model.dtype).bits // 8 if model.dtype.is_floating_point else 4
    return 2 * config.num_hidden_layers * heads * head_dim * element


def batch_size_for_memory(
    model: Any, tokens_per_row: int, *, available_bytes: int | None = None, fraction: float = 0.25
) -> int:
    """Rows whose KV cache (plus logits and activations) fits in ``fraction`` of available memory.

    ``available_bytes`` defaults to psutil's available system memory (the decoder runs on CPU).
    """
    import psutil

    available = psutil.virtual_memory().available if available_bytes is None else available_bytes
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    # per row: its KV cache, one fp32 logits row, and the padded prefill activations (~4 hidden vectors
    # plus the MLP per token) that exist briefly while the row is prefilled
    per_row = (
        kv_bytes_per_token(model) * tokens_per_row
        + 4 * config.vocab_size
        + 4 * tokens_per_row * (4 * config.hidden_size + 2 * getattr(config, "intermediate_size", 0))
    )
    return max(1, int(available * fraction) // max(1, per_row))


class BatchDecoder:
    """The running batch of one model. Not thread-safe: one thread drives ``add``/``step``/``remove``.

    Args:
        model: a transformers causal LM in eval mode whose cache is a plain ``DynamicCache``.
        tokenizer: decodes the tail of a row for stop-string checks.
        eos_token_ids: tokens that end a row (kept as its last token).
        pad_token_id: the id used for left padding (masked out; any id works).
        prefix_cache: where finished rows leave their KV and new prompts look for a shared prefix
            (``None``: every prompt is prefilled in full).
        generator: the ``torch.Generator`` (on the model's device) that sampled rows draw from
            (``None``: torch's global one, shared with every other user in the process).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        eos_token_ids: Sequence[int],
        pad_token_id: int,
        prefix_cache: PrefixCache | None = None,
        generator: torch.Generator | None = None,
    ):
        self.model = model
        self.prefix_cache = prefix_cache
        self.generator = generator
        self.tokenizer = tokenizer
        self.eos_token_ids = {int(t) for t in eos_token_ids}
        self.pad_token_id = int(pad_token_id)
        self.device = next(model.parameters()).device
        self.running: list[Row] = []
        self._cache: Any = None
        self._attention: torch.Tensor | None = None  # (rows, cached length): 1 = real token
        self.forward_passes = 0  # prefills + decode steps, for tests and metrics
        self.row_steps = 0  # rows x decode steps actually computed
        self.prefilled_tokens = 0  # prompt tokens run through the model (not reused, not deduplicated)

    # ----------------------------------------------------------------- public API
    @torch.no_grad()
    def add(self, rows: Sequence[Row]) -> list[Row]:
        """Prefill ``rows`` and merge them into the running batch; returns those already done.

        Each new row gets its first token from the prefill (so a 1-token budget costs no decode step).
        Identical prompts in one call are prefilled once (an RL group samples one prompt ``n``
        times); with a :class:`PrefixCache`, a prompt that starts like a stored sequence (the
        earlier turns of its episode) prefills only the rest, on top of the stored KV.
        """
        done = [row for row in rows if row.spec.max_tokens <= 0]
        for row in done:
            row.finish = "length"
        rows = [row for row in rows if row.spec.max_tokens > 0]
        if not rows:
            return done
        if min(len(row.spec.prompt_ids) for row in rows) == 0:
            raise ValueError("a prompt must have at least one token")
        leader_of: dict[tuple[int, ...], int] = {}
        unique: list[Row] = []
        leader = []  # per row: its index in `unique`
        for row in rows:
            key = tuple(row.spec.prompt_ids)
            if key not in leader_of:
                leader_of[key] = len(unique)
                unique.append(row)
            leader.append(leader_of[key])
        matches = [
            self.prefix_cache.lookup(row.spec.prompt_ids) if self.prefix_cache is not None else (None, 0)
            for row in unique
        ]
        fresh = [i for i, (entry, _) in enumerate(matches) if entry is None]
        if len(fresh) > 1 and self._warm_shared_prefix([unique[i].spec.prompt_ids for i in fresh]):
            for i in fresh:
                matches[i] = self.prefix_cache.lookup(unique[i].spec.prompt_ids)
            fresh = [i for i, (entry, _) in enumerate(matches) if entry is None]
        reuse = [i for i, (entry, _) in enumerate(matches) if entry is not None]
        for group in (fresh, reuse):
            if not group:
                continue
            members = [unique[i] for i in group]
            group_matches = [matches[i] for i in group]
            logits, cache, attention = self._prefill(members, group_matches)
            self.forward_passes += 1
            self.prefilled_tokens += sum(
                len(r.spec.prompt_ids) - m for r, (_, m) in zip(members, group_matches, strict=True)
            )
            slot = {u: k for k, u in enumerate(group)}
            group_rows = [row for row, u in zip(rows, leader, strict=True) if u in slot]
            index = torch.tensor([slot[u] for u in leader if u in slot], dtype=torch.long, device=self.device)
            if len(group_rows) != len(members):  # followers share their leader's prefill
                logits, attention = logits[index], attention[index]
                for layer in _layers(cache):
                    layer.keys, layer.values = layer.keys[index], layer.values[index]
            epoch = self.prefix_cache.epoch if self.prefix_cache is not None else 0
            for row in group_rows:
                row.position, row.kv_epoch = len(row.spec.prompt_ids), epoch
            self._merge(cache, attention)
            self.running.extend(group_rows)
            self._choose(logits, group_rows)
        return done + self._drop_finished()

    def _warm_shared_prefix(self, prompts: Sequence[Sequence[int]]) -> bool:
        """Prefill the prefix all ``prompts`` share once and store it (a step's prompts share the
        system prompt and its worked example); returns whether the cache now holds it."""
        if self.prefix_cache is None or not self.prefix_cache.max_bytes:
            return False
        shortest = min(len(p) for p in prompts) - 1
        if shortest < self.prefix_cache.min_tokens:
            return False
        ids = torch.tensor([list(p[:shortest]) for p in prompts], dtype=torch.long)
        differs = (ids != ids[0]).any(dim=0).nonzero()
        shared = int(differs[0]) if differs.numel() else shortest
        if shared < self.prefix_cache.min_tokens:
            return False
        from transformers import DynamicCache

        cache = DynamicCache()
        self.model(
            input_ids=ids[:1, :shared].to(self.device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.forward_passes += 1
        self.prefilled_tokens += shared
        self.prefix_cache.put(
            ids[0, :shared].tolist(),
            [(layer.keys[0].clone(), layer.values[0].clone()) for layer in _layers(cache)],
        )
        return True

    def _prefill(
        self, rows: Sequence[Row], matches: Sequence[tuple[CachedPrefix | None, int]]
    ) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """One forward pass over the uncached part of each prompt; returns last logits, cache, mask.

        Layout per row (``P`` = longest reused prefix, ``W`` = longest rest)::

            [pad .. reused prefix (m tokens)] [pad .. the rest of the prompt]
             <------------- P ------------->   <------------- W ----------->

        The attention mask hides the pads and position ids count real tokens only, so each row's
        numerics are those of its unbatched forward pass.
        """
        reused = [m for _, m in matches]
        prefix_width = max(reused)
        rests = [row.spec.prompt_ids[m:] for row, m in zip(rows, reused, strict=True)]
        width = max(len(rest) for rest in rests)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), prefix_width + width), dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (rest, m) in enumerate(zip(rests, reused, strict=True)):
            input_ids[i, width - len(rest) :] = torch.tensor(rest, dtype=torch.long)
            attention[i, prefix_width - m : prefix_width] = 1
            attention[i, prefix_width + width - len(rest) :] = 1
            positions[i, width - len(rest) :] = torch.arange(m, m + len(rest))
        cache = growable_cache()  # decode steps then write in place (no torch.cat of the whole cache)
        if prefix_width:  # a reusing group: every row has an entry (``add`` splits fresh rows off)
            for layer in range(len(matches[0][0].layers)):
                keys = [_pad_left(e.layers[layer][0][:, :m], prefix_width - m) for e, m in matches]
                values = [_pad_left(e.layers[layer][1][:, :m], prefix_width - m) for e, m in matches]
                cache.update(torch.stack(keys).to(self.device), torch.stack(values).to(self.device), layer)
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=attention.to(self.device),
            position_ids=positions.to(self.device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :], out.past_key_values, attention.to(self.device)

    @torch.no_grad()
    def step(self) -> list[Row]:
        """One decode step for every running row; returns the rows that finished in it."""
        if not self.running:
            return []
        last = torch.tensor([[row.tokens[-1]] for row in self.running], dtype=torch.long, device=self.device)
        positions = torch.tensor(
            [[row.position] for row in self.running], dtype=torch.long, device=self.device
        )
        ones = torch.ones((len(self.running), 1), dtype=self._attention.dtype, device=self.device)
        self._attention = torch.cat([self._attention, ones], dim=1)
        out = self.model(
            input_ids=last,
            attention_mask=self._attention,
            position_ids=positions,
            past_key_values=self._cache,
            use_cache=True,
        )
        self._cache = out.past_key_values
        for row in self.running:
            row.position += 1
        self.forward_passes += 1
        self.row_steps += len(self.running)
        self._choose(out.logits[:, -1, :], self.running)
        return self._drop_finished()

    def remove(self, predicate: Callable[[Row], bool], finish: str = "aborted") -> list[Row]:
        """Take the running rows matching ``predicate`` out of the batch, marked ``finish``."""
        leaving = [row for row in self.running if predicate(row)]
        for row in leaving:
            row.finish = finish
        return self._drop_finished() if leaving else []

    # ----------------------------------------------------------------- internals
    def _choose(self, logits: torch.Tensor, rows: Sequence[Row]) -> None:
        """Pick each row's next token from its last-position logits, record it and its log-prob."""
        raw = logits.to(_score_dtype(logits.dtype))
        temperatures = torch.tensor([row.spec.temperature for row in rows], dtype=raw.dtype)
        greedy = temperatures <= 0
        scale = torch.where(greedy, torch.ones_like(temperatures), temperatures).to(raw.device)
        log_probs = torch.log_softmax(raw / scale[:, None], dim=-1)
        scores = self._penalised(raw, rows)
        chosen = torch.empty(len(rows), dtype=torch.long, device=raw.device)
        if bool(greedy.any()):
            index = greedy.nonzero().squeeze(-1).to(raw.device)
            chosen[index] = scores[index].argmax(-1)
        if not bool(greedy.all()):
            index = (~greedy).nonzero().squeeze(-1)
            sampled = scores[index.to(raw.device)] / scale[index.to(raw.device), None]
            sampled_rows = [rows[i] for i in index.tolist()]
            sampled = _filter_top_k_top_p(sampled, sampled_rows)
            chosen[index.to(raw.device)] = self._sample(torch.softmax(sampled, dim=-1), sampled_rows)
        picked = log_probs.gather(-1, chosen[:, None]).squeeze(-1).tolist()
        for row, token, log_prob in zip(rows, chosen.tolist(), picked, strict=True):
            row.tokens.append(int(token))
            row.log_probs.append(float(log_prob))
            row.finish = self._finish_of(row)

    def _sample(self, probs: torch.Tensor, rows: Sequence[Row]) -> torch.Tensor:
        """One token per row, each row drawing from its own generator (or the decoder's)."""
        generators = [
            row.spec.generator if row.spec.generator is not None else self.generator for row in rows
        ]
        if all(g is generators[0] for g in generators):
            return sample_categorical(probs, generator=generators[0])
        chosen = torch.empty(len(rows), dtype=torch.long, device=probs.device)
        for generator in {id(g): g for g in generators}.values():
            index = torch.tensor([i for i, g in enumerate(generators) if g is generator], device=probs.device)
            chosen[index] = sample_categorical(probs[index], generator=generator)
        return chosen

    def _penalised(self, raw: torch.Tensor, rows: Sequence[Row]) -> torch.Tensor:
        """transformers' repetition penalty over prompt + generated ids, for rows that ask for it."""
        if all(row.spec.repetition_penalty == 1.0 for row in rows):
            return raw
        scores = raw.clone()
        for i, row in enumerate(rows):
            penalty = row.spec.repetition_penalty
            if penalty == 1.0:
                continue
            seen = torch.tensor(sorted(set(row.spec.prompt_ids) | set(row.tokens)), device=raw.device)
            values = scores[i, seen]
            scores[i, seen] = torch.where(values < 0, values * penalty, values / penalty)
        return scores

    def _finish_of(self, row: Row) -> str | None:
        if row.tokens[-1] in self.eos_token_ids:
            return "eos"
        if stop_in_tail(self.tokenizer, row.tokens, row.spec.stop):
            return "stop"
        if len(row.tokens) >= row.spec.max_tokens:
            return "length"
        return None

    def _merge(self, cache: Any, attention: torch.Tensor) -> None:
        """Append freshly prefilled rows to the running cache, left-padding the shorter side."""
        if self._cache is None or not self.running:
            self._cache, self._attention = cache, attention
            return
        old_len, new_len = self._attention.shape[1], attention.shape[1]
        width = max(old_len, new_len)
        pad_old, pad_new = width - old_len, width - new_len
        for old_layer, new_layer in zip(_layers(self._cache), _layers(cache), strict=True):
            old_layer.keys = torch.cat(
                [_pad_left(old_layer.keys, pad_old), _pad_left(new_layer.keys, pad_new)]
            )
            old_layer.values = torch.cat(
                [_pad_left(old_layer.values, pad_old), _pad_left(new_layer.values, pad_new)]
            )
        self._attention = torch.cat(
            [
                torch.nn.functional.pad(self._attention, (pad_old, 0)),
                torch.nn.functional.pad(attention.to(self._attention.dtype), (pad_new, 0)),
            ]
        )

    def _store(self, i: int, row: Row) -> None:
        """Leave row ``i``'s KV (prompt + all new tokens but the last, never fed) in the prefix cache."""
        fed = list(row.spec.prompt_ids) + row.tokens[:-1]
        if len(fed) < self.prefix_cache.min_tokens or len(fed) != row.position:
            return
        if row.kv_epoch != self.prefix_cache.epoch:
            return  # the weights changed while the row ran: its KV is not the new model's
        self.prefix_cache.put(fed, _row_kv(self._cache, self._attention, i))

    def _drop_finished(self) -> list[Row]:
        finished = [row for row in self.running if row.finish is not None]
        if not finished:
            return []
        if self.prefix_cache is not None and self.prefix_cache.max_bytes:
            for i, row in enumerate(self.running):
                if row.finish is not None and row.finish != "aborted":
                    self._store(i, row)
        keep = [i for i, row in enumerate(self.running) if row.finish is None]
        self.running = [self.running[i] for i in keep]
        if not keep:
            self._cache, self._attention = None, None
            return finished
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        attention = self._attention[index]
        # leading columns that are padding for every remaining row cost attention work: trim them
        first = int(attention.any(dim=0).nonzero()[0])
        self._attention = attention[:, first:]
        for layer in _layers(self._cache):
            layer.keys = layer.keys[index, :, first:]
            layer.values = layer.values[index, :, first:]
        return finished


def _score_dtype(dtype: torch.dtype) -> torch.dtype:
    """Log-probs in float32 at least: float32 for float32/bf16/fp16 models, float64 for a float64 one."""
    return torch.promote_types(dtype, torch.float32)


def _row_kv(cache: Any, attention: torch.Tensor, i: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Row ``i``'s keys and values without padding columns, one ``(kv_heads, len, head_dim)`` pair per layer."""
    columns = attention[i].nonzero().squeeze(-1)
    return [
        (layer.keys[i][:, columns].clone(), layer.values[i][:, columns].clone()) for layer in _layers(cache)
    ]


def _layers(cache: Any) -> list[Any]:
    layers = getattr(cache, "layers", None)
    if layers is None or any(getattr(layer, "is_sliding", False) for layer in layers):
        raise TypeError(
            f"BatchDecoder needs a DynamicCache of full-attention layers, got {type(cache).__name__}"
        )
    return layers


def _pad_left(tensor: torch.Tensor, count: int) -> torch.Tensor:
    """Zero-pad the sequence axis (dim -2 of ``(batch, heads, seq, head_dim)``) on the left."""
    return torch.nn.functional.pad(tensor, (0, 0, count, 0)) if count else tensor


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``probs`` (rows sum to ~1), by inverse-CDF: one uniform per row.

    The same distribution as ``torch.multinomial(probs, 1)``, which on CPU draws one exponential per
    vocabulary entry (49k for SmolLM2): 18 ms per decode step at 16 rows, against ~0.3 ms here (a
    sixth of the whole step; measured in issue 14). A token of probability 0 is never drawn:
    ``u`` lies in ``(0, total]`` and the first index whose cumulative mass reaches ``u`` adds mass.
    The uniforms come from ``generator`` (``None``: torch's global generator).
    """
    cdf = probs.cumsum(dim=-1)
    uniform = torch.rand((probs.shape[0], 1), dtype=cdf.dtype, device=cdf.device, generator=generator)
    uniform = 1.0 - uniform  # (0, 1]
    index = torch.searchsorted(cdf, uniform * cdf[:, -1:])
    return index.squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def _filter_top_k_top_p(scores: torch.Tensor, rows: Sequence[Row]) -> torch.Tensor:
    """transformers' top-k then top-p warpers, per row (each row keeps at least one token)."""
    top_k = [row.spec.top_k if row.spec.top_k and row.spec.top_k > 0 else 0 for row in rows]
    top_p = [row.spec.top_p if row.spec.top_p is not None else 1.0 for row in rows]
    if all(k == 0 or k >= scores.shape[-1] for k in top_k) and all(p >= 1.0 for p in top_p):
        return scores
    sorted_scores, order = scores.sort(dim=-1, descending=True)
    ranks = torch.arange(scores.shape[-1], device=scores.device)[None, :]
    limits = torch.tensor([k if k > 0 else scores.shape[-1] for k in top_k], device=scores.device)
    sorted_scores = sorted_scores.masked_fill(ranks >= limits[:, None], float("-inf"))
    probs = torch.softmax(sorted_scores, dim=-1)
    # drop a token when the tokens ranked above it already hold top_p of the mass
    mass_before = probs.cumsum(dim=-1) - probs
    p = torch.tensor(top_p, dtype=scores.dtype, device=scores.device)
    sorted_scores = sorted_scores.masked_fill((mass_before >= p[:, None]) & (ranks > 0), float("-inf"))
    return torch.full_like(scores, float("-inf")).scatter(-1, order, sorted_scores)
