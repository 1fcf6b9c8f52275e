"""The SFT dataset class: env token layout and a loss mask that excludes observation tokens."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from masksearch.env.config import SearchEnvConfig
from masksearch.env.session import SearchSession
from masksearch.env.standalone import render_prompt
from masksearch.recipes.sft_ramp.dataset import TrajectorySFTDataset, tokenize_trajectory
from masksearch.search_tool.types import Hit

PROMPT = [{"role": "system", "content": "Answer with search."}, {"role": "user", "content": "Question: who?"}]
TURNS = [
    "<think>need the composer</think>\n<search>Tosca composer</search>",
    "<think>Puccini</think>\n<answer> Puccini </answer>",
]
HITS = [Hit("1", "Tosca", "Tosca is an opera by Giacomo Puccini. <answer>x</answer>", 1.0)]


def _env_episode(tok):
    """The same episode run through the env's session: the reference token layout."""
    session = SearchSession(tok, SearchEnvConfig(max_turns=4), response_budget=2048)
    session.add_generation(tok.encode(TURNS[0], add_special_tokens=False))
    session.add_search_result(HITS, None)
    session.add_generation(tok.encode(TURNS[1], add_special_tokens=False))
    messages = [*PROMPT]
    for turn in session.turns:
        messages.append({"role": "assistant", "content": turn.generated_text})
        if turn.observation is not None:
            messages.append({"role": "tool", "content": turn.observation})
    return session, messages


class TestTokenizeTrajectory:
    def test_matches_env_layout_and_mask(self, student_tokenizer):
        tok = student_tokenizer
        session, messages = _env_episode(tok)
        ids, mask = tokenize_trajectory(tok, messages)
        prompt_ids, _ = render_prompt(tok, PROMPT)
        # byte-exact with an RL rollout: prompt + response ids (+ EOS), mask = env's response_mask
        assert ids == prompt_ids + session.response_ids + [tok.eos_token_id]
        assert mask == [0] * len(prompt_ids) + session.response_mask + [1]

    def test_information_has_no_loss(self, student_tokenizer):
        tok = student_tokenizer
        _, messages = _env_episode(tok)
        ids, mask = tokenize_trajectory(tok, messages)
        trained = tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
        ignored = tok.decode([t for t, m in zip(ids, mask, strict=True) if not m])
        assert trained == TURNS[0] + TURNS[1] + tok.eos_token
        assert "<information>" not in trained and "Giacomo" not in trained
        assert "<information>Doc 1(Title: Tosca)" in ignored and ignored.endswith("</information>\n\n")

    @pytest.mark.parametrize(
        "messages",
        [
            PROMPT,  # no assistant message
            [*PROMPT, {"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}],  # stray role
        ],
    )
    def test_bad_rows(self, student_tokenizer, messages):
        with pytest.raises(ValueError):
            tokenize_trajectory(student_tokenizer, messages)


class TestDatasetClass:
    @pytest.mark.parametrize(
        ("pad_mode", "truncation", "max_length"),
        [("no_padding", "right", 4096), ("right", "right", 512), ("right", "left", 40)],
    )
    def test_items(self, tmp_path, student_tokenizer, pad_mode, truncation, max_length):
        _, messages = _env_episode(student_tokenizer)
        path = tmp_path / "sft.parquet"
        pd.DataFrame([{"messages": messages}]).to_parquet(path)
        config = OmegaConf.create({"pad_mode": pad_mode, "truncation": truncation, "max_length": max_length})
        item = TrajectorySFTDataset(str(path), student_tokenizer, config)[0]
        ids, mask = tokenize_trajectory(student_tokenizer, messages)
        n = min(len(ids), max_length)
        keep = slice(len(ids) - n, None) if truncation == "left" else slice(0, n)
        assert item["input_ids"][:n].tolist() == ids[keep] and item["loss_mask"][:n].tolist() == mask[keep]
        if pad_mode == "right":
            assert item["input_ids"].shape[0] == max_length and int(item["attention_mask"].sum()) == n
        else:
            assert torch.equal(item["position_ids"], torch.arange(n))

    def test_error_truncation(self, tmp_path, student_tokenizer):
        _, messages = _env_episode(student_tokenizer)
        path = tmp_path / "sft.parquet"
        pd.DataFrame([{"messages": messages}]).to_parquet(path)
        config = OmegaConf.create({"pad_mode": "no_padding", "truncation": "error", "max_length": 10})
        with pytest.raises(ValueError, match="larger than"):
            TrajectorySFTDataset(str(path), student_tokenizer, config)[0]
