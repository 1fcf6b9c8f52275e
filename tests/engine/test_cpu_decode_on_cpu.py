"""The CPU decode fixes give the stock numerics: in-place KV buffers and GQA attention without expansion.

Random inputs come from local generators (torch's global RNG is left alone). The attention check
runs in float64, where a wrong head grouping or mask is off by ~0.1 and rounding by ~1e-16.
"""

from __future__ import annotations

import types

import pytest
import torch
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from masksearch.engine.cpu_decode import (
    GrowableLayer,
    gqa_decode_attention,
    growable_cache,
    register_attention,
)

_RNG = torch.Generator().manual_seed(0)


def _kv(batch, length, heads=3, dim=8):
    shape = (batch, heads, length, dim)
    return torch.randn(shape, generator=_RNG), torch.randn(shape, generator=_RNG)


def test_growable_layer_holds_what_dynamic_layer_holds_and_writes_in_place():
    grow, stock = GrowableLayer(), DynamicLayer()
    chunks = [_kv(2, 5)] + [_kv(2, 1) for _ in range(GrowableLayer.HEADROOM + 3)]
    buffers = set()
    for keys, values in chunks:
        got, expected = grow.update(keys, values), stock.update(keys, values)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
        buffers.add(grow._key_buffer.data_ptr())
    assert len(buffers) == 2  # one re-home when the headroom ran out, not one copy per step
    assert grow.get_seq_length() == stock.get_seq_length() == 5 + GrowableLayer.HEADROOM + 3


def test_growable_layer_rehomes_when_the_decoder_replaces_its_tensors():
    grow = GrowableLayer()
    grow.update(*_kv(3, 4))
    grow.keys, grow.values = grow.keys[[0, 2]], grow.values[[0, 2]]  # a row left the batch
    kept = grow.keys.clone()
    keys, values = _kv(2, 1)
    out_keys, _ = grow.update(keys, values)
    assert out_keys.shape == (2, 3, 5, 8)
    assert torch.equal(out_keys[:, :, :4], kept) and torch.equal(out_keys[:, :, 4:], keys)


def test_growable_cache_replicates_growable_layers():
    cache = growable_cache()
    cache.update(*_kv(1, 2), 0)
    cache.update(*_kv(1, 2), 1)
    assert [type(layer) for layer in cache.layers] == [GrowableLayer, GrowableLayer]


@pytest.mark.parametrize("q_len", [1, 4])
def test_gqa_attention_equals_stock_sdpa_with_a_padding_mask(q_len):
    rng = torch.Generator().manual_seed(1)
    batch, heads, kv_heads, dim, kv_len = 3, 9, 3, 16, 12
    module = types.SimpleNamespace(num_key_value_groups=heads // kv_heads, is_causal=True, training=False)

    def randn(*shape):
        return torch.randn(shape, generator=rng, dtype=torch.float64)

    query = randn(batch, heads, q_len, dim)
    key, value = randn(batch, kv_heads, kv_len, dim), randn(batch, kv_heads, kv_len, dim)
    mask = torch.ones(batch, 1, q_len, kv_len, dtype=torch.bool)
    mask[0, :, :, :5] = False  # a left-padded row
    mask = mask & torch.ones(q_len, kv_len, dtype=torch.bool).tril(kv_len - q_len)
    ours, _ = gqa_decode_attention(module, query, key, value, mask, scaling=dim**-0.5)
    stock, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=dim**-0.5)
    assert ours.shape == stock.shape == (batch, q_len, heads, dim)
    assert torch.allclose(ours, stock, rtol=0, atol=1e-12)


def test_registration_is_idempotent():
    assert register_attention() == register_attention()
