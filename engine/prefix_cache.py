"""KV caches of finished rows, reused when a later prompt starts with the same tokens.

Why: a multi-turn search episode sends its whole context again every turn (prompt, earlier turns,
the ``<information>`` blocks), and an RL group sends the same prompt ``n`` times. On CPU the
prefill of those repeated tokens is most of a turn's cost. A row's KV for positions ``< m`` depends
only on its first ``m`` tokens (causal attention), so the KV a finished row leaves behind serves
any later prompt that shares a prefix with it, exactly as recomputing it would (to float rounding).

An entry is the KV of one sequence (all layers, ``(kv_heads, length, head_dim)`` per layer),
stored under its token ids. :meth:`PrefixCache.lookup` returns the entry with the longest common
prefix with a prompt, always leaving at least one prompt token to feed (its logits pick the first
new token). Entries are dropped least-recently-used first beyond ``max_bytes``; an entry that is a
prefix of a newer one is dropped when the newer one arrives (turn ``k``'s KV inside turn ``k+1``'s).

The KV is only valid for the weights that produced it: the owner calls :meth:`clear` when weights
change (``HFRolloutServer.update_weights``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["CachedPrefix", "PrefixCache"]


@dataclass
class CachedPrefix:
    """One stored sequence: its tokens and, per layer, keys and values ``(kv_heads, length, head_dim)``."""

    tokens: torch.Tensor  # (length,) long
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    nbytes: int

    def __len__(self) -> int:
        return int(self.tokens.numel())


class PrefixCache:
    """A byte-bounded LRU of per-sequence KV caches (thread-safe).

    Args:
        max_bytes: total size of the stored keys and values; ``0`` stores nothing.
        min_tokens: a shared prefix shorter than this is not worth a lookup hit (re-prefilling a few
            tokens costs less than the extra padding of a mixed prefill).
    """

    def __init__(self, max_bytes: int, min_tokens: int = 32):
        if max_bytes < 0 or min_tokens < 1:
            raise ValueError("max_bytes must be >= 0 and min_tokens >= 1")
        self.max_bytes = int(max_bytes)
        self.min_tokens = int(min_tokens)
        self._entries: OrderedDict[int, CachedPrefix] = OrderedDict()
        self._next_key = 0
        self._bytes = 0
        self._lock = threading.Lock()
        self.epoch = 0  # bumped by clear(): a row prefilled before it must not be stored after it
        self.hits = 0
        self.misses = 0
        self.reused_tokens = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every entry (the weights changed)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self.epoch += 1

    def put(self, tokens: Sequence[int], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Store the KV of ``tokens`` (``layers[i] = (keys, values)``, each ``(kv_heads, len, head_dim)``)."""
        if len(tokens) < self.min_tokens or not layers:
            return
        length = int(layers[0][0].shape[-2])
        if length != len(tokens):
            raise ValueError(f"KV of {length} positions for {len(tokens)} tokens")
        nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
        if nbytes > self.max_bytes:
            return
        ids = torch.as_tensor(list(tokens), dtype=torch.long)
        with self._lock:
            for key, entry in list(self._entries.items()):
                shorter = min(len(entry), ids.numel())
                if not torch.equal(entry.tokens[:shorter], ids[:shorter]):
                    continue
                if len(entry) >= ids.numel():  # already covered by a longer (or equal) entry
                    self._entries.move_to_end(key)
                    return
                self._drop(key)  # a prefix of the new one: superseded
            self._entries[self._next_key] = CachedPrefix(ids, layers, nbytes)
            self._next_key += 1
            self._bytes += nbytes
            while self._bytes > self.max_bytes and self._entries:
                self._drop(next(iter(self._entries)))

    def lookup(self, prompt: Sequence[int]) -> tuple[CachedPrefix | None, int]:
        """The entry sharing the longest prefix with ``prompt`` and that length (``< len(prompt)``).

        Returns ``(None, 0)`` when no entry shares at least ``min_tokens`` tokens.
        """
        limit = len(prompt) - 1
        if limit < self.min_tokens or not self._entries:
            with self._lock:
                self.misses += 1
            return None, 0
        ids = torch.as_tensor(list(prompt[:limit]), dtype=torch.long)
        best, best_len, best_key = None, 0, None
        with self._lock:
            for key, entry in self._entries.items():
                n = min(len(entry), limit)
                if n <= best_len:
                    continue
                same = entry.tokens[:n] == ids[:n]
                common = n if bool(same.all()) else int((~same).nonzero()[0])
                if common > best_len:
                    best, best_len, best_key = entry, common, key
            if best is None or best_len < self.min_tokens:
                self.misses += 1
                return None, 0
            self._entries.move_to_end(best_key)
            self.hits += 1
            self.reused_tokens += best_len
        return best, best_len

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.nbytes
