"""``masksearch.eval.metrics``: the scoring shared by ``masksearch eval`` and training validation.

The verl side (the one reward file with ``eval_metrics``) is tested in tests/rewards/test_metrics_on_cpu.py.
"""

from __future__ import annotations

import pytest

from masksearch.eval.metrics import DEFAULT_METRICS, SAMPLE_KEYS, empty_scores, score_sample
from masksearch.rewards import compute_score as reward_compute_score

SEARCH = "<think>look</think>\n<search>q</search>\n\n<information>Doc 1(Title: X) y</information>\n\n"


class TestScoreSample:
    @pytest.mark.parametrize(
        ("response", "golds", "expected", "format_ok"),
        [
            (
                SEARCH + "<think>ok</think>\n<answer>Elena Marchetti</answer>",
                ["Elena Marchetti"],
                (1.0, 1.0, 1.0),
                1.0,
            ),  # exact
            (
                SEARCH + "<think>ok</think>\n<answer>the engineer Elena Marchetti</answer>",
                ["Elena Marchetti"],
                (0.0, 0.8, 1.0),
                1.0,
            ),  # padded answer: recall 1, EM 0
            (
                SEARCH + "<think>ok</think>\n<answer>Marchetti</answer>",
                ["Elena Marchetti", "E. Marchetti"],
                (0.0, 0.6667, 0.5),
                1.0,
            ),  # max over aliases
            (
                "<think>ok</think>\n<answer>Elena Marchetti",
                ["Elena Marchetti"],
                (0.0, 0.0, 0.0),
                0.0,
            ),  # never closed
            ("Elena Marchetti", ["Elena Marchetti"], (0.0, 0.0, 0.0), 0.0),  # no tags at all
            (
                "<answer>Elena Marchetti</answer>",
                ["Elena Marchetti"],
                (1.0, 1.0, 1.0),
                0.0,
            ),  # readable answer, bad grammar: not gated
            (None, ["x"], (0.0, 0.0, 0.0), 0.0),  # None response
            ("", [], (0.0, 0.0, 0.0), 0.0),  # empty response, no golds
        ],
    )
    def test_table(self, response, golds, expected, format_ok):
        out = score_sample("hotpotqa", response, golds)
        assert list(out) == [*DEFAULT_METRICS, *SAMPLE_KEYS]
        assert (out["em"], out["f1"], out["recall"]) == pytest.approx(expected, abs=1e-4)
        assert out["format_ok"] == format_ok

    def test_same_numbers_as_the_reward_module(self):
        response = SEARCH + "<think>ok</think>\n<answer>Ostra river</answer>"
        out = score_sample("nq", response, ["Ostra"])
        for name in DEFAULT_METRICS:
            assert (
                out[name]
                == reward_compute_score("nq", response, ["Ostra"], answer_reward=name)["answer_score"]
            )

    def test_ramp_sources_score_per_mask(self):
        out = score_sample(
            "ramp_wiki", "<think>t</think>\n<answer>\nParis\n1900\n</answer>", ["Paris", "1889"]
        )
        assert out["em"] == 0.5 and out["recall"] == 0.5

    def test_named_metrics_and_unknown_reward(self):
        response = "<think>t</think><answer>Elena Marchetti one two three four five</answer>"
        out = score_sample("nq", response, ["Elena Marchetti"], None, ("recall_length_penalty",))
        assert out["recall_lp"] == pytest.approx(2 * 2 / 7)  # recall 1 x penalty max_ratio·|g|/|p|
        with pytest.raises(KeyError, match="Unknown reward"):
            score_sample("nq", "x", ["a"], None, ("nope",))

    def test_empty_scores_has_the_same_keys(self):
        assert list(empty_scores()) == list(score_sample("nq", "x", ["a"]))
