"""Scripted policies: deterministic-format writers of model turns, for smoke tests and debugging.

A random tiny model never writes a ``<search>`` tag, so training plumbing that only matters once the
model searches (observation masking, retrieval failures, env metrics, rewards of searched answers)
would go untested on CPU. The ``hf`` rollout can replace sampling with one of these policies
(``actor_rollout_ref.rollout.engine_kwargs.hf.scripted_policy=masksearch.env.scripted:search_then_answer``):
the policy writes the text, and the rollout scores those tokens under the current weights, so
log-probs, gradients and the rollout-vs-trainer check stay real.

A policy is ``fn(context: str) -> str``: ``context`` is the decoded prompt plus the response so far
(special tokens included); the return value is the next turn's text.
"""

from __future__ import annotations

import random
import re
import zlib

from masksearch.core.grammar import INFORMATION
from masksearch.search_tool.observation import parse_observation

ASSISTANT_START = "<|im_start|>assistant\n"
USER_START = "<|im_start|>user\n"
END_OF_TURN = "<|im_end|>"
_MASK = re.compile(r"\[mask\]", re.IGNORECASE)


def _split(context: str) -> tuple[str, str]:
    """(last user message, the assistant response so far)."""
    head, _, response = context.rpartition(ASSISTANT_START)
    user = head.rpartition(USER_START)[2].split(END_OF_TURN)[0]
    return user, response


def _query_from(user_message: str, max_words: int = 8) -> str:
    text = _MASK.sub(" ", user_message)
    text = re.sub(r"^(Question|Title|Passage):\s*", "", text.strip(), flags=re.MULTILINE)
    words = [w for w in re.split(r"\s+", text) if w and not w.lower().startswith("number")]
    return " ".join(words[:max_words])


def search_then_answer(context: str) -> str:
    """Search once with the start of the user message, then answer with a retrieved title.

    Which title is chosen varies with a random draw, so rollouts of one prompt differ (GRPO and DAPO
    need variance inside a group); the number of answer lines follows ``Number of masks: k``.
    """
    user, response = _split(context)
    if "<information>" not in response:
        return f"<think>I should look this up.</think>\n<search>{_query_from(user)}</search>"
    observation = response.rpartition(INFORMATION.open)[2].partition(INFORMATION.close)[0]
    titles = [doc.title for doc in parse_observation(observation)] or ["unknown"]
    masks = re.search(r"Number of masks:\s*(\d+)", user)
    count = int(masks.group(1)) if masks else 1
    rng = random.Random(zlib.crc32(context.encode()) ^ random.getrandbits(32))
    fills = "\n".join(rng.choice(titles) for _ in range(count))
    return f"<think>The results mention {titles[0]}.</think>\n<answer>{fills}</answer>{END_OF_TURN}"


def always_answer(context: str) -> str:
    """Answer at once with the first line of the question, never searching (a trivially formatted policy)."""
    user, _ = _split(context)
    first = _query_from(user, max_words=3) or "nothing"
    return f"<think>I know this.</think>\n<answer>{first}</answer>{END_OF_TURN}"
