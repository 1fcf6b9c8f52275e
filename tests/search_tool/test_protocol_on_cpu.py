"""Search-R1 wire format (masksearch.search_tool.protocol)."""

from __future__ import annotations

import pytest

from masksearch.search_tool.protocol import Document, RetrieveRequest, RetrieveResponse, ScoredDocument
from masksearch.search_tool.types import Hit

HITS = [[Hit("7", "Paris", "Capital of France.", 2.5), Hit("9", "Lyon", "A city.", 1.0)], []]


class TestRetrieveResponse:
    def test_scored_shape(self):
        payload = RetrieveResponse.from_hits(HITS, return_scores=True).model_dump()
        assert payload == {
            "result": [
                [
                    {"document": {"id": "7", "contents": "Paris\nCapital of France."}, "score": 2.5},
                    {"document": {"id": "9", "contents": "Lyon\nA city."}, "score": 1.0},
                ],
                [],
            ]
        }

    def test_unscored_items_are_bare_documents(self):
        # Search-R1's server appends the document dict itself when return_scores is false.
        payload = RetrieveResponse.from_hits(HITS, return_scores=False).model_dump()
        assert payload["result"][0][0] == {"id": "7", "contents": "Paris\nCapital of France."}

    @pytest.mark.parametrize("return_scores", [True, False])
    def test_round_trip(self, return_scores):
        hits = RetrieveResponse.model_validate_json(
            RetrieveResponse.from_hits(HITS, return_scores).model_dump_json()
        ).to_hits()
        assert [[(h.id, h.title, h.text) for h in row] for row in hits] == [
            [(h.id, h.title, h.text) for h in row] for row in HITS
        ]
        assert hits[0][0].score == (2.5 if return_scores else 0.0)

    @pytest.mark.parametrize(
        ("item", "expected"),
        [
            # Search-R1 BM25 (pyserini) documents: no id, title/text beside contents
            (
                {
                    "document": {"title": "Paris", "text": "Capital.", "contents": '"Paris"\nCapital.'},
                    "score": 3,
                },
                Hit("0", "Paris", "Capital.", 3.0),
            ),
            # wiki-18 dense server rows: quoted title inside contents
            (
                {"document": {"id": "12", "contents": '"Paris"\nCapital.'}, "score": 0.8},
                Hit("12", "Paris", "Capital.", 0.8),
            ),
            # bare document (return_scores false) with an extra key we do not know
            ({"id": "5", "contents": "Lyon\nCity.", "url": "x"}, Hit("5", "Lyon", "City.", 0.0)),
        ],
    )
    def test_accepts_foreign_servers(self, item, expected):
        assert RetrieveResponse.model_validate({"result": [[item]]}).to_hits() == [[expected]]

    def test_discriminates_items(self):
        parsed = RetrieveResponse.model_validate(
            {"result": [[{"document": {"id": "1"}, "score": 1}, {"id": "2"}]]}
        )
        assert isinstance(parsed.result[0][0], ScoredDocument)
        assert isinstance(parsed.result[0][1], Document)


class TestRetrieveRequest:
    def test_search_r1_request(self):
        req = RetrieveRequest.model_validate({"queries": ["a", "b"], "topk": 3, "return_scores": True})
        assert (req.queries, req.topk, req.return_scores) == (["a", "b"], 3, True)

    def test_defaults(self):
        req = RetrieveRequest.model_validate({"queries": ["a"]})
        assert req.topk is None and req.return_scores is False
