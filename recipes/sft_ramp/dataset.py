"""verl SFT dataset (``data.custom_cls``) that lays a trajectory out exactly as the search env does.

Rows are the ``messages`` parquet of :mod:`masksearch.sft.convert`: the RL prompt (system,
user), then the response as alternating ``assistant`` messages (the model's turns) and ``tool``
messages (the env's observations, ``\\n\\n<information>…</information>\\n\\n``).

verl's default ``MultiTurnSFTDataset`` would render every message with its own chat-template
header (``<|im_start|>tool …``), a context the policy never sees during RL, where observations are
appended inside the one assistant turn. This class keeps verl's config keys, padding and output
format but tokenises like :class:`masksearch.env.session.SearchSession`::

    chat_template(prompt, add_generation_prompt=True) | turn_1 | OBS | turn_2 | … | turn_n | EOS
    loss 0 …                                     0   | 1 … 1  | 0…0 | 1 … 1  | … | 1 … 1  | 1

* each model turn is tokenised on its own (``add_special_tokens=False``), as the env appends it;
* an observation is tokenised as the env does: ``OBS_PREFIX``, body and ``OBS_SUFFIX`` separately;
* an EOS token closes the response (loss 1), so the model learns to stop after ``</answer>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

from masksearch.core.logs import module_logger
from masksearch.env.session import OBS_PREFIX, OBS_SUFFIX

logger = module_logger(__name__)

__all__ = ["RESPONSE_ROLES", "TrajectorySFTDataset", "tokenize_trajectory"]

#: Roles of the response part: the model's turns and the environment's observations.
MODEL_ROLE = "assistant"
OBSERVATION_ROLE = "tool"
RESPONSE_ROLES = (MODEL_ROLE, OBSERVATION_ROLE)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return [int(t) for t in tokenizer.encode(text, add_special_tokens=False)]


def _observation_ids(tokenizer: Any, text: str) -> list[int]:
    """Ids of an observation as ``SearchSession`` builds them (prefix, body, suffix separately)."""
    if (
        text.startswith(OBS_PREFIX)
        and text.endswith(OBS_SUFFIX)
        and len(text) >= len(OBS_PREFIX + OBS_SUFFIX)
    ):
        body = text[len(OBS_PREFIX) : len(text) - len(OBS_SUFFIX)]
        return _encode(tokenizer, OBS_PREFIX) + _encode(tokenizer, body) + _encode(tokenizer, OBS_SUFFIX)
    return _encode(tokenizer, text)


def tokenize_trajectory(
    tokenizer: Any,
    messages: Sequence[dict[str, Any]],
    *,
    append_eos: bool = True,
    apply_chat_template_kwargs: dict[str, Any] | None = None,
) -> tuple[list[int], list[int]]:
    """``(input_ids, loss_mask)`` of one trajectory in the env's layout (see the module docstring).

    Args:
        tokenizer: the student's tokenizer.
        messages: prompt messages, then ``assistant``/``tool`` messages (the first ``assistant``
            message starts the response).
        append_eos: close the response with the tokenizer's EOS token (loss 1).
        apply_chat_template_kwargs: extra arguments for the prompt's chat template.

    Raises:
        ValueError: no assistant message, or a non-response role after the response started.
    """
    msgs = [dict(m) for m in messages]
    start = next((i for i, m in enumerate(msgs) if m.get("role") == MODEL_ROLE), None)
    if start is None:
        raise ValueError("a trajectory needs at least one assistant message")
    prompt, response = msgs[:start], msgs[start:]
    bad = sorted({str(m.get("role")) for m in response} - set(RESPONSE_ROLES))
    if bad:
        raise ValueError(
            f"roles {bad} after the first assistant message; expected only {list(RESPONSE_ROLES)}"
        )
    rendered = tokenizer.apply_chat_template(
        prompt,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
        **(apply_chat_template_kwargs or {}),
    )
    if isinstance(rendered, dict) or hasattr(rendered, "input_ids"):
        rendered = rendered["input_ids"]
    ids = [int(t) for t in (rendered[0] if rendered and isinstance(rendered[0], list) else rendered)]
    mask = [0] * len(ids)
    for message in response:
        content = str(message.get("content") or "")
        if message["role"] == MODEL_ROLE:
            seg = _encode(tokenizer, content)
            mask.extend([1] * len(seg))
        else:
            seg = _observation_ids(tokenizer, content)
            mask.extend([0] * len(seg))
        ids.extend(seg)
    if append_eos and tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
        mask.append(1)
    return ids, mask


class TrajectorySFTDataset(MultiTurnSFTDataset):
    """``MultiTurnSFTDataset`` with the env's token layout (``data.custom_cls``).

    Reads the same config keys (``messages_key``, ``max_length``, ``truncation``, ``pad_mode``,
    ``apply_chat_template_kwargs``) and returns the same fields (``input_ids``, ``position_ids``,
    ``loss_mask``, plus ``attention_mask`` with right padding). Extra key:
    ``data.append_eos`` (default True).
    """

    def __init__(self, parquet_files, tokenizer, config, processor=None, max_samples: int = -1):
        super().__init__(parquet_files, tokenizer, config, processor=processor, max_samples=max_samples)
        self.append_eos = bool((config or {}).get("append_eos", True))

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        ids, mask = tokenize_trajectory(
            self.tokenizer,
            self.messages[item],
            append_eos=self.append_eos,
            apply_chat_template_kwargs=dict(self.apply_chat_template_kwargs or {}),
        )
        input_ids = torch.tensor(ids, dtype=torch.long)
        loss_mask = torch.tensor(mask, dtype=torch.long)
        n = input_ids.shape[0]
        if n > self.max_length:
            if self.truncation == "error":
                raise ValueError(f"sequence_length={n} is larger than max_length={self.max_length}")
            keep = slice(n - self.max_length, n) if self.truncation == "left" else slice(0, self.max_length)
            input_ids, loss_mask = input_ids[keep], loss_mask[keep]
            n = self.max_length
        position_ids = torch.arange(n, dtype=torch.long)
        if self.pad_mode == "no_padding":
            return {"input_ids": input_ids, "position_ids": position_ids, "loss_mask": loss_mask}
        pad = self.max_length - n
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return {
            "input_ids": F.pad(input_ids, (0, pad), value=pad_id),
            "attention_mask": F.pad(torch.ones(n, dtype=torch.long), (0, pad), value=0),
            "position_ids": F.pad(position_ids, (0, pad), value=0),
            "loss_mask": F.pad(loss_mask, (0, pad), value=0),
        }
