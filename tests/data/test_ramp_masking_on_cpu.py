"""Quality rules of RAMP masking (masksearch.data.masking), incl. property tests of the leak rule."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masksearch.data.masking import (
    apply_masks,
    assign_splits,
    choose_spans,
    count_occurrences,
    drop_overlaps,
    is_malformed,
    leaked_spans,
    usable_spans,
)
from masksearch.data.ramp import RampConfig, build_ramp
from masksearch.data.spans import RuleSpanExtractor, Span

MASK = "[mask]"

# Entities repeat across sentences and also appear in lower case, so many spans leak.
ENTITIES = [
    "Marie Curie",
    "Pierre Curie",
    "Paris",
    "Nobel Prize",
    "Warsaw",
    "Sorbonne",
    "1903",
    "1911",
    "12 March 1990",
    "45 km",
    '"Radioactive Substances"',
    "United States",
    "New York",
    "York",
    "Mask Records",
]
FILLER = ["the", "a", "won", "studied", "in", "and", "was", "born", "near", "with", "of", "river", "to"]


def _span(text: str, sub: str, label: str = "name", nth: int = 0) -> Span:
    start = -1
    for _ in range(nth + 1):
        start = text.index(sub, start + 1)
    return Span(start, start + len(sub), sub, label)


class TestCountOccurrences:
    @pytest.mark.parametrize(
        ("hay", "needle", "expected"),
        [
            ("Paris and paris", "PARIS", 2),  # case-insensitive
            ("aaa", "aa", 2),  # overlapping occurrences count
            ("Parisian", "Paris", 1),  # substring inside a longer word counts (stricter is safer)
            ("abc", "", 0),  # empty needle never occurs
            ("abc", "x", 0),
        ],
    )
    def test_counts(self, hay, needle, expected):
        assert count_occurrences(hay, needle) == expected


class TestUsableSpans:
    def test_repeated_span_is_never_usable(self):
        text = "Paris is big. Many live in paris today."
        usable, leaks = usable_spans(text, [_span(text, "Paris")])
        assert usable == [] and leaks == 1

    def test_surname_left_in_text_is_a_partial_leak(self):
        text = "It stars Jean-Paul Belmondo as Michel; it was Belmondo's breakthrough."
        usable, leaks = usable_spans(text, [_span(text, "Jean-Paul Belmondo"), _span(text, "Michel")])
        assert [s.text for s in usable] == ["Michel"] and leaks == 1
        usable, _ = usable_spans(text, [_span(text, "Michel")], title="Michel (film)")
        assert usable == []  # key word of the span in the shown title

    def test_span_in_title_is_dropped_when_title_shown(self):
        text = "Curie won the prize in 1903."
        spans = [_span(text, "Curie"), _span(text, "1903", "date")]
        usable, leaks = usable_spans(text, spans, title="Marie Curie")
        assert [s.text for s in usable] == ["1903"] and leaks == 1
        usable_hidden, _ = usable_spans(text, spans, title=None)  # title hidden: no title check
        assert len(usable_hidden) == 2

    def test_overlaps_keep_priority_then_length(self):
        text = "It opened on 12 March 1990 in Rome."
        spans = [
            _span(text, "1990", "date"),
            _span(text, "12 March 1990", "date"),
            _span(text, "March", "name"),
        ]
        usable, _ = usable_spans(text, spans)
        assert [s.text for s in usable] == ["12 March 1990"]

    def test_touching_spans_count_as_overlap(self):
        kept = drop_overlaps([Span(0, 3, "abc", "name"), Span(3, 6, "def", "name")])
        assert len(kept) == 1

    @pytest.mark.parametrize(
        "bad",
        [
            Span(0, 3, "xyz", "name"),  # text does not match the offsets
            Span(5, 2, "", "name"),  # inverted offsets
            Span(0, 6, "Alpha ", "name"),  # surrounding whitespace
            Span(0, 1, "A", "name"),  # too short to be worth a mask
            Span(0, 99, "x", "name"),  # past the end
        ],
    )
    def test_invalid_candidates_are_ignored(self, bad):
        usable, _ = usable_spans("Alpha Beta gamma.", [bad])
        assert usable == []


class TestApplyAndLeak:
    def test_apply_masks_and_refill_round_trip(self):
        text = "Ada Lovelace wrote notes in 1843 on the Engine."
        spans = [_span(text, "Ada Lovelace"), _span(text, "1843", "date")]
        masked = apply_masks(text, spans)
        assert masked == "[mask] wrote notes in [mask] on the Engine."
        assert leaked_spans(masked, [s.text for s in spans]) == []

    def test_apply_masks_rejects_overlap(self):
        with pytest.raises(ValueError):
            apply_masks("abcdef", [Span(0, 3, "abc", "x"), Span(2, 4, "cd", "x")])

    def test_mask_token_is_not_a_leak_of_a_span_named_mask(self):
        masked = "The label [mask] signed [mask]."
        assert leaked_spans(masked, ["Mask Records", "mask"]) == []

    def test_leak_detected_in_text_and_title(self):
        assert leaked_spans("[mask] met PARIS.", ["Paris"]) == ["Paris"]
        assert leaked_spans("[mask] met him.", ["Paris"], title="Paris Hilton") == ["Paris"]

    def test_choose_spans_sorted_and_sized(self):
        spans = [Span(i * 10, i * 10 + 4, "x" * 4, "name") for i in range(6)]
        chosen = choose_spans(spans, 3, random.Random(0))
        assert len(chosen) == 3 and chosen == sorted(chosen, key=lambda s: s.start)
        with pytest.raises(ValueError):
            choose_spans(spans, 7, random.Random(0))


class TestMalformedAndSplit:
    @pytest.mark.parametrize(
        ("pid", "text", "expected"),
        [
            ("1", "A normal passage.", False),
            ("", "A normal passage.", True),  # no id
            ("1", "   ", True),  # empty text
            ("1", "Already has a [MASK] token.", True),  # mask token, any case
            ("1", "Has an <answer>x</answer> tag.", True),  # protocol tags confuse the grammar
        ],
    )
    def test_is_malformed(self, pid, text, expected):
        assert is_malformed(pid, text) is expected

    def test_split_is_order_independent_and_disjoint(self):
        ids = [f"p{i}" for i in range(50)]
        a = assign_splits(ids, 0.2, seed=3)
        b = assign_splits(list(reversed(ids)), 0.2, seed=3)
        assert a == b
        assert sum(v == "val" for v in a.values()) == 10
        assert assign_splits(ids, 0.2, seed=4) != a

    def test_split_keeps_one_val_and_one_train(self):
        assert sorted(assign_splits(["a", "b"], 0.01, seed=0).values()) == ["train", "val"]
        assert set(assign_splits(["a", "b", "c"], 0.0, seed=0).values()) == {"train"}


# ---------------------------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------------------------


@st.composite
def passage_texts(draw) -> str:
    sentences = []
    for _ in range(draw(st.integers(2, 6))):
        tokens = draw(
            st.lists(
                st.one_of(
                    st.sampled_from(ENTITIES),
                    st.sampled_from(ENTITIES).map(str.lower),
                    st.sampled_from(FILLER),
                ),
                min_size=3,
                max_size=12,
            )
        )
        sentence = " ".join(tokens)
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
    return " ".join(sentences)


class _P:
    def __init__(self, pid: str, title: str, text: str) -> None:
        self.id, self.title, self.text = pid, title, text


def _check_row(row: dict, original: str, show_title: bool) -> None:
    info, gt = row["extra_info"], row["reward_model"]["ground_truth"]
    masked = info["masked_text"]
    assert info["mask_num"] == len(gt) == masked.count(MASK) == len(info["span_offsets"]) >= 1
    # The leak rule: no masked span is readable in the masked passage (or the shown title).
    visible = masked.replace(MASK, "\x00").casefold()
    for span in gt:
        assert span.casefold() not in visible
        if show_title:
            assert span.casefold() not in info["title"].casefold()
    # Offsets are sorted, disjoint, point at the spans, and refilling restores the passage.
    offsets = info["span_offsets"]
    for (s, e), span in zip(offsets, gt, strict=True):
        assert original[s:e] == span
    assert all(a[1] < b[0] for a, b in itertools.pairwise(offsets))
    refilled = masked
    for span in gt:
        refilled = refilled.replace(MASK, span, 1)
    assert refilled == original


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(passage_texts(), min_size=1, max_size=3),
    title=st.sampled_from(["Marie Curie", "Paris", "Chemistry", ""]),
    show_title=st.booleans(),
    seed=st.integers(0, 5),
)
def test_leak_rule_holds_on_every_generated_sample(texts, title, show_title, seed):
    passages = [_P(f"p{i}", title, t) for i, t in enumerate(texts)]
    config = RampConfig(min_words=3, max_words=500, val_fraction=0.0, seed=seed, show_title=show_title)
    build = build_ramp(passages, RuleSpanExtractor(), config)
    by_id = {p.id: p.text for p in passages}
    for row in build.train + build.val:
        _check_row(row, by_id[row["extra_info"]["passage_id"]], show_title)
    summary = build.summary
    assert summary.passages_read == summary.accepted + sum(summary.rejected.values())


@settings(max_examples=80, deadline=None)
@given(text=passage_texts(), data=st.data())
def test_usable_spans_are_unique_and_disjoint_for_any_candidates(text, data):
    n = len(text)
    bounds = data.draw(st.lists(st.tuples(st.integers(0, n), st.integers(0, n)), max_size=12))
    candidates = [Span(min(a, b), max(a, b), text[min(a, b) : max(a, b)], "name") for a, b in bounds]
    usable, _ = usable_spans(text, candidates)
    for s in usable:
        assert count_occurrences(text, s.text) == 1
    assert all(a.end < b.start for a, b in itertools.pairwise(usable))
    if usable:
        assert leaked_spans(apply_masks(text, usable), [s.text for s in usable]) == []
