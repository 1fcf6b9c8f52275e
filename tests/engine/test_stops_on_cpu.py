"""The one stop cutter (``masksearch.engine.stops``): where a turn ends on EOS or a stop string.

``find_stop_cut`` cuts every turn of the search session (``env/session.py``) and the ``hf`` rollout's
scripted turns; the engine's per-token check (``stop_in_tail``) is covered through the rollout and
``HFGenerator`` tests (rows ending on their own stop strings).
"""

from __future__ import annotations

import pytest

from masksearch.engine.stops import find_stop_cut


@pytest.fixture(scope="module")
def tokenizer(embedded_tokenizer):
    """SmolLM2's tokenizer, eos = pad = ``<|im_end|>``."""
    return embedded_tokenizer


def enc(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


class TestFindStopCut:
    @pytest.mark.parametrize(
        "text, kept_text, stop",
        [
            # a stop string at the very end: nothing to cut
            ("<search>a</search>", "<search>a</search>", "</search>"),
            # text after the stop string is dropped
            ("<search>a</search> then <answer>b</answer>", "<search>a</search>", "</search>"),
            # the earlier of the two stop strings wins (">" and "<" share one token here)
            ("<answer>b</answer><search>a</search>", "<answer>b</answer><", "</answer>"),
            # the token holding the end of the stop string is kept whole (">." is one token)
            ("<answer>b</answer>. More.", "<answer>b</answer>.", "</answer>"),
            # no stop string: everything is kept
            ("<think>plain</think>", "<think>plain</think>", None),
            # empty turn
            ("", "", None),
        ],
    )
    def test_cut(self, tokenizer, text, kept_text, stop):
        ids = enc(tokenizer, text)
        n, found, eos = find_stop_cut(tokenizer, ids, ("</search>", "</answer>"), {tokenizer.eos_token_id})
        assert tokenizer.decode(ids[:n]) == kept_text
        assert found == stop and eos is False

    def test_eos_ends_the_turn_and_is_kept(self, tokenizer):
        ids = [
            *enc(tokenizer, "<think>a</think>"),
            tokenizer.eos_token_id,
            *enc(tokenizer, "<search>x</search>"),
        ]
        n, stop, eos = find_stop_cut(tokenizer, ids, ("</search>",), {tokenizer.eos_token_id})
        assert ids[:n][-1] == tokenizer.eos_token_id and stop is None and eos is True

    def test_stop_before_eos_drops_the_eos(self, tokenizer):
        ids = [*enc(tokenizer, "<answer>a</answer>"), tokenizer.eos_token_id]
        n, stop, eos = find_stop_cut(tokenizer, ids, ("</answer>",), {tokenizer.eos_token_id})
        assert tokenizer.eos_token_id not in ids[:n] and stop == "</answer>" and eos is False
