"""Two memory-traffic fixes for batched decoding on CPU, where a decode step is bound by bytes moved.

At 50 rows of ~1.4k tokens, SmolLM2-135M's KV cache is ~3 GB (fp32). transformers, per decode step:

* ``DynamicLayer.update`` appends with ``torch.cat``: the whole cache is copied every step.
  :class:`GrowableLayer` keeps keys and values in buffers with spare room and writes the new
  position in place (a copy only when the room runs out or the decoder re-shapes the batch);
* SDPA with an attention mask (always present in a padded batch) first expands grouped KV heads
  (``repeat_kv``: 3x the cache for SmolLM2's 9 query / 3 KV heads, copied every step and layer).
  :func:`gqa_decode_attention` instead folds each KV head's query heads into the query-length
  axis for one-token steps, so keys and values are read in place; longer queries (prefill)
  take transformers' own SDPA path unchanged.

The numerics are those of the stock path (same kernels, same order of reduction per head); the
decoder's tests check log-probs of a float64 model against a teacher-forced forward pass to 1e-9.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

__all__ = ["ATTENTION_NAME", "GrowableLayer", "gqa_decode_attention", "growable_cache", "register_attention"]

#: ``attn_implementation`` name of :func:`gqa_decode_attention` once registered.
ATTENTION_NAME = "masksearch_gqa_sdpa"


class GrowableLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``keys``/``values`` are views of larger buffers.

    ``update`` writes in place while the buffer has room; it re-homes the cache into a fresh buffer
    (one copy, as ``torch.cat`` does every step) when the room runs out, or when someone replaced
    ``keys``/``values`` (the batch decoder does when rows join or leave).
    """

    HEADROOM = 256  # positions of spare room per re-home

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None
        self._key_view: torch.Tensor | None = None
        self._value_view: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        length = self.keys.shape[-2] if self.keys.numel() else 0
        buffer = self._key_buffer
        if (
            buffer is None
            or self.keys is not self._key_view
            or self.values is not self._value_view
            or buffer.shape[0] != key_states.shape[0]
            or length + new > buffer.shape[-2]
        ):
            batch, heads, _, dim = key_states.shape
            shape = (batch, heads, length + new + self.HEADROOM, dim)
            self._key_buffer, self._value_buffer = key_states.new_empty(shape), value_states.new_empty(shape)
            if length:
                self._key_buffer[:, :, :length] = self.keys
                self._value_buffer[:, :, :length] = self.values
        self._key_buffer[:, :, length : length + new] = key_states
        self._value_buffer[:, :, length : length + new] = value_states
        self.keys = self._key_view = self._key_buffer[:, :, : length + new]
        self.values = self._value_view = self._value_buffer[:, :, : length + new]
        return self.keys, self.values


def growable_cache() -> DynamicCache:
    """An empty ``DynamicCache`` whose layers are :class:`GrowableLayer`."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = GrowableLayer
    return cache


def gqa_decode_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, without expanding grouped KV heads for one-token queries.

    ``query`` is ``(batch, heads, q_len, dim)``, ``key``/``value`` ``(batch, kv_heads, kv_len, dim)``;
    returns ``(batch, q_len, heads, dim)`` as ``sdpa_attention_forward`` does.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    if q_len != 1 or kv_heads == heads or dropout:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    group = heads // kv_heads
    # repeat_kv maps KV head j to query heads j*group .. j*group+group-1: fold those into q_len
    folded = query.reshape(batch, kv_heads, group, dim)
    mask = attention_mask
    if mask is not None:
        mask = mask[:, :, :, : key.shape[-2]]  # (batch, 1, 1, kv_len): broadcast over the group
    out = torch.nn.functional.scaled_dot_product_attention(folded, key, value, attn_mask=mask, scale=scaling)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def register_attention() -> str:
    """Register :func:`gqa_decode_attention` (and SDPA's mask) with transformers; returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    if ATTENTION_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION_NAME, gqa_decode_attention)
    if ATTENTION_NAME not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)
    return ATTENTION_NAME
