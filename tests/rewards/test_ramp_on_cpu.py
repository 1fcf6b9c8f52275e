"""Tests for masksearch.rewards.ramp: reading fills (lists, numbering, restored passages) and scoring."""

from __future__ import annotations

import numpy as np
import pytest

from masksearch.rewards.answer import exact_match, token_recall
from masksearch.rewards.ramp import as_span_golds, parse_fills, score_ramp

TEMPLATE = "The Eiffel Tower in [mask] was completed in [mask] for the World's Fair."


class TestParseFills:
    @pytest.mark.parametrize(
        ("answer", "n", "expected"),
        [
            ("Paris\n1889", 2, ["Paris", "1889"]),  # one per line
            ("1. Paris\n2. 1889", 2, ["Paris", "1889"]),  # "1." numbering
            ("1) Paris\n(2) 1889", 2, ["Paris", "1889"]),  # "1)" and "(2)"
            ("[mask1]: Paris\n[mask2]: 1889", 2, ["Paris", "1889"]),  # "[maskN]:" numbering
            ("[MASK 1] - Paris\nMask 2: 1889", 2, ["Paris", "1889"]),  # variants
            ("- Paris\n- 1889", 2, ["Paris", "1889"]),  # bullets
            ("\n\nParis\n\n1889\n", 2, ["Paris", "1889"]),  # blank lines skipped
            ("Paris; 1889", 2, ["Paris", "1889"]),  # one line, ';'-separated
            ("Paris, 1889", 2, ["Paris", "1889"]),  # one line, ',' gives exactly k parts
            ("Paris, France", 1, ["Paris, France"]),  # single mask keeps commas
            ("Paris, France, 1889", 2, ["Paris, France, 1889"]),  # ambiguous commas: not split
            ("Masked Singer", 1, ["Masked Singer"]),  # a fill starting with "Mask" is not numbering
            ("3.5 million", 1, ["3.5 million"]),  # a decimal is not numbering
            ("1889.", 1, ["1889."]),  # a year with a full stop is not numbering
            ("", 2, []),  # empty answer
        ],
    )
    def test_lists(self, answer, n, expected):
        assert parse_fills(answer, n) == expected

    @pytest.mark.parametrize(
        ("answer", "expected"),
        [
            (
                "The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
                ["Paris", "1889"],
            ),  # exact restoration
            (
                "The  Eiffel Tower in Paris, France\nwas completed in March 1889 for the World's Fair",
                ["Paris, France", "March 1889"],
            ),  # whitespace changes, missing final full stop
            ("Paris\n1889", ["Paris", "1889"]),  # a list still works when the template is known
        ],
    )
    def test_restored_passage(self, answer, expected):
        assert parse_fills(answer, 2, TEMPLATE) == expected

    def test_mask_at_edges(self):
        template = "[mask] is the capital of [mask]"
        assert parse_fills("Paris is the capital of France", 2, template) == ["Paris", "France"]


class TestScoreRamp:
    @pytest.mark.parametrize(
        ("answer", "golds", "expected", "all_correct"),
        [
            ("Paris\n1889", ["Paris", "1889"], 1.0, True),  # all right
            ("Paris\n1890", ["Paris", "1889"], 0.5, False),  # one of two
            ("Paris", ["Paris", "1889"], 0.5, False),  # missing fill scores 0
            ("Paris\n1889\nextra", ["Paris", "1889"], 1.0, True),  # extra fills ignored
            ("1889\nParis", ["Paris", "1889"], 0.0, False),  # order matters
            ("City\n1889", [["Paris", "City"], "1889"], 1.0, True),  # per-span aliases
            (None, ["Paris"], 0.0, False),  # no answer
            ("Paris", [], 0.0, False),  # no spans
            ("Paris\n1889", np.array(["Paris", None], dtype=object), 0.5, False),  # a span without gold
        ],
    )
    def test_table_em(self, answer, golds, expected, all_correct):
        assert score_ramp(answer, golds, exact_match) == (pytest.approx(expected), all_correct)

    def test_recall_per_span(self):
        score, ok = score_ramp("Paris\n1889", ["Paris France", "1889"], token_recall)
        assert score == pytest.approx(0.75) and not ok

    def test_restored_passage_scored(self):
        answer = "The Eiffel Tower in Paris was completed in 1889 for the World's Fair."
        assert score_ramp(answer, ["Paris", "1889"], exact_match, TEMPLATE) == (1.0, True)


class TestSpanGolds:
    @pytest.mark.parametrize(
        ("ground_truth", "expected"),
        [
            ("Paris", [["Paris"]]),  # one span
            (["Paris", "1889"], [["Paris"], ["1889"]]),  # list of spans
            (np.array(["Paris", "1889"]), [["Paris"], ["1889"]]),  # numpy array
            ([["Paris", "City"], 1889], [["Paris", "City"], ["1889"]]),  # aliases and numbers
            ({"spans": ["a", "b"]}, [["a"], ["b"]]),  # dict
            (None, []),  # None
            ({"other": 1}, []),  # unknown dict
        ],
    )
    def test_table(self, ground_truth, expected):
        assert as_span_golds(ground_truth) == expected
