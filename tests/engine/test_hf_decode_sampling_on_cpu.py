"""The batch decoder's sampler draws from the categorical distribution it is given."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masksearch.engine.hf_decode import sample_categorical


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1.0)), min_size=1, max_size=12).filter(
            lambda row: sum(row) > 0
        ),
        min_size=1,
        max_size=6,
    ),
    seed=st.integers(0, 2**31 - 1),
)
def test_draws_only_tokens_with_probability_mass(rows, seed):
    width = max(len(row) for row in rows)
    weights = torch.tensor([row + [0.0] * (width - len(row)) for row in rows])
    probs = weights / weights.sum(-1, keepdim=True)
    torch.manual_seed(seed)
    for _ in range(20):
        drawn = sample_categorical(probs)
        assert drawn.shape == (len(rows),)
        assert bool((probs.gather(-1, drawn[:, None]) > 0).all()), (probs, drawn)


def test_frequencies_match_the_distribution_per_row():
    torch.manual_seed(0)
    probs = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.0, 0.0, 0.1, 0.9], [0.25, 0.25, 0.25, 0.25]])
    draws = 40_000
    counts = torch.zeros_like(probs)
    for _ in range(draws // 1000):
        drawn = sample_categorical(probs.repeat_interleave(1000, dim=0)).view(3, 1000)
        for row in range(3):
            counts[row] += torch.bincount(drawn[row], minlength=4).float()
    frequencies = counts / draws
    # 4 standard errors of a binomial proportion at n = 40k is <= 0.01
    assert torch.allclose(frequencies, probs, atol=0.01), frequencies
    assert frequencies[0, 3] == 0 and frequencies[1, :2].sum() == 0


def test_agrees_with_torch_multinomial_in_law_on_a_vocabulary_sized_row():
    torch.manual_seed(1)
    logits = torch.randn(49_152) * 4
    probs = torch.softmax(logits, -1)
    top = probs.topk(3).indices
    ours = sample_categorical(probs.expand(20_000, -1).contiguous())
    theirs = torch.multinomial(probs.expand(20_000, -1).contiguous(), 1).squeeze(-1)
    for token in top.tolist():
        assert abs(float((ours == token).float().mean()) - float((theirs == token).float().mean())) < 0.02
