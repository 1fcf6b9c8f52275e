"""Retrievers behind one interface: BM25 (vs rank_bm25), dense, hybrid RRF, manifests, the search CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masksearch.cli import main as cli_main
from masksearch.search_tool.bm25 import tokenize_for_bm25
from masksearch.search_tool.corpus import Passage, read_corpus, write_passages_jsonl
from masksearch.search_tool.hybrid import reciprocal_rank_fusion
from masksearch.search_tool.manifest import IndexLoadError, IndexMismatchError, Manifest
from masksearch.search_tool.retrievers import Retriever, build_index, cached_index, load_retriever
from masksearch.search_tool.types import Hit


def run_cli(argv: list[str], monkeypatch) -> int:
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ["masksearch.search_tool.cli"])
    return cli_main.main(argv)


@pytest.fixture(scope="module")
def bm25(bm25_index):
    return load_retriever(bm25_index)


@pytest.fixture(scope="module")
def passages(small_corpus) -> list[Passage]:
    return list(read_corpus(small_corpus))


class TestBM25:
    def test_title_query_finds_its_passage(self, bm25, passages):
        target = next(p for p in passages if p.title == "2001: A Space Odyssey")
        hits = bm25.search(["2001 Space Odyssey Kubrick film"], 3)[0]
        assert hits[0].id == target.id
        assert (hits[0].title, hits[0].text) == (target.title, target.text)  # served from the index
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    @pytest.mark.parametrize(
        ("query", "why"),
        [
            ("", "empty"),
            ("   \n\t", "whitespace only"),
            ("the of and a", "stopwords only"),
            ("qwxzzy plorkf", "no indexed word"),
        ],
    )
    def test_no_match_gives_empty_list(self, bm25, query, why):
        assert bm25.search([query], 5) == [[]], why

    def test_batch_keeps_order_and_topk_edges(self, bm25):
        out = bm25.search(["Kubrick", "", "algebra"], 2)
        assert len(out) == 3 and out[1] == [] and len(out[0]) <= 2 and len(out[2]) == 2
        assert bm25.search(["algebra"], 0) == [[]]  # topk 0 -> nothing
        assert len(bm25.search(["film"], 10_000)[0]) <= bm25.doc_count  # clamped, not an error

    def test_matches_rank_bm25_top5(self, bm25, passages):
        """Same tokens into BM25Okapi; top-5 ids must be identical on >= 95% of queries."""
        from rank_bm25 import BM25Okapi

        reference = BM25Okapi(tokenize_for_bm25(p.contents for p in passages), k1=1.5, b=0.75)
        queries = [" ".join(p.text.split()[3:9]) for p in passages[::3]]  # 100 six-word queries
        ours = bm25.search(queries, 5)
        same = 0
        for query, hits in zip(queries, ours, strict=True):
            scores = reference.get_scores(tokenize_for_bm25([query])[0])
            top = np.argsort(-scores, kind="stable")[:5]
            same += [passages[i].id for i in top if scores[i] > 0] == [h.id for h in hits]
        assert same / len(queries) >= 0.95

    def test_mmap_load(self, bm25):
        assert bm25.mmap
        assert isinstance(bm25._model.scores["data"], np.memmap)

    def test_numpy_backend_agrees(self, bm25_index, bm25):
        numpy_bm25 = load_retriever(bm25_index, backend="numpy")
        queries = ["history of music", "European capital city", "mathematics algebra group"]
        a, b = bm25.search(queries, 3), numpy_bm25.search(queries, 3)
        assert [[h.id for h in row] for row in a] == [[h.id for h in row] for row in b]

    def test_satisfies_protocol(self, bm25):
        assert isinstance(bm25, Retriever)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(queries=st.lists(st.text(max_size=200), max_size=5), topk=st.integers(min_value=-2, max_value=8))
    def test_arbitrary_queries_never_raise(self, bm25, queries, topk):
        out = bm25.search(queries, topk)
        assert len(out) == len(queries)
        assert all(len(row) <= max(topk, 0) for row in out)


class TestManifest:
    def test_manifest_contents(self, bm25_index, small_corpus):
        m = json.loads((bm25_index / "manifest.json").read_text())
        assert m["kind"] == "bm25" and m["params"]["method"] == "robertson"
        assert m["doc_count"] == sum(1 for _ in read_corpus(small_corpus))
        assert len(m["corpus_sha256"]) == 64 and "bm25s" in m["versions"]

    def test_matching_corpus_accepted(self, bm25_index, small_corpus):
        assert load_retriever(bm25_index, small_corpus).doc_count > 0

    def test_mismatched_corpus_refused(self, bm25_index, tmp_path):
        other = tmp_path / "other.jsonl"
        write_passages_jsonl([Passage("1", "T", "different corpus")], other)
        with pytest.raises(IndexMismatchError, match=r"different corpus.*Rebuild the index"):
            load_retriever(bm25_index, other)

    def test_mismatch_is_one_line_cli_error(self, bm25_index, tmp_path, monkeypatch, capsys):
        other = tmp_path / "other.jsonl"
        write_passages_jsonl([Passage("1", "T", "different corpus")], other)
        assert run_cli(["search", "--index", str(bm25_index), "--corpus", str(other), "q"], monkeypatch) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("masksearch search: error: index was built from a different corpus")
        assert "\n" not in err

    @pytest.mark.parametrize(
        ("setup", "message"),
        [
            ("missing", "not found"),  # no folder at all
            ("no_manifest", "no manifest.json"),  # a folder that is not an index
            ("bad_json", "not valid JSON"),  # corrupted manifest
            ("future_version", "format version"),  # written by a newer masksearch
        ],
    )
    def test_bad_index_folders(self, tmp_path, setup, message):
        folder = tmp_path / "idx"
        if setup != "missing":
            folder.mkdir()
        if setup == "bad_json":
            (folder / "manifest.json").write_text("{oops")
        if setup == "future_version":
            (folder / "manifest.json").write_text(
                json.dumps({"format": "masksearch-index", "format_version": 99})
            )
        with pytest.raises(IndexLoadError, match=message):
            load_retriever(folder)

    def test_build_refuses_non_empty_out(self, small_corpus, bm25_index):
        with pytest.raises(FileExistsError, match="--overwrite"):
            build_index(small_corpus, "bm25", bm25_index)

    def test_cached_index_reuses_build(self, tmp_path):
        corpus = tmp_path / "c.jsonl"
        write_passages_jsonl([Passage(str(i), f"T{i}", f"word{i} shared text") for i in range(20)], corpus)
        first = cached_index(corpus, "bm25", cache_dir=tmp_path / "cache")
        stamp = (first / "manifest.json").stat().st_mtime_ns
        again = cached_index(corpus, "bm25", cache_dir=tmp_path / "cache")
        assert again == first and (again / "manifest.json").stat().st_mtime_ns == stamp


class TestSearchCLI:
    def test_human_output(self, bm25_index, monkeypatch, capsys):
        argv = ["search", "--index", str(bm25_index), "--topk", "2", "Stanley Kubrick film", "   "]
        assert run_cli(argv, monkeypatch) == 0
        out = capsys.readouterr().out
        assert "Query: Stanley Kubrick film" in out
        assert "1. 2001: A Space Odyssey" in out and "score" in out
        assert "(no matching passages)" in out  # the blank query

    def test_json_output_is_search_r1_shape(self, bm25_index, monkeypatch, capsys):
        assert run_cli(["search", "--index", str(bm25_index), "--json", "algebra"], monkeypatch) == 0
        result = json.loads(capsys.readouterr().out)["result"]
        assert set(result[0][0]) == {"document", "score"}
        assert set(result[0][0]["document"]) == {"id", "contents"}

    def test_index_build_cli(self, small_corpus, tmp_path, monkeypatch, capsys):
        out = tmp_path / "idx"
        argv = ["index", "build", "--corpus", str(small_corpus), "--retriever", "bm25", "--out", str(out)]
        assert run_cli([*argv, "--no-progress"], monkeypatch) == 0
        assert "built bm25 index" in capsys.readouterr().out
        assert run_cli([*argv, "--no-progress"], monkeypatch) == 2  # exists, no --overwrite


class TestFusion:
    @staticmethod
    def hits(*ids: str) -> list[Hit]:
        return [Hit(i, f"T{i}", "x", 1.0) for i in ids]

    @pytest.mark.parametrize(
        ("rankings", "expected"),
        [
            ([["a", "b"], ["b", "c"]], ["b", "a", "c"]),  # found by both beats rank 1 of one
            ([["a", "b"], ["a", "b"]], ["a", "b"]),  # agreement keeps the order
            ([["a"], []], ["a"]),  # one ranker empty
            ([[], []], []),  # nothing found
            ([["a", "b", "c"], ["c", "b", "a"]], ["a", "c", "b"]),  # symmetric ties: first seen wins
        ],
    )
    def test_rrf_order(self, rankings, expected):
        fused = reciprocal_rank_fusion([self.hits(*r) for r in rankings], topk=5)
        assert [h.id for h in fused] == expected

    def test_rrf_score_formula(self):
        fused = reciprocal_rank_fusion([self.hits("a"), self.hits("x", "a")], topk=1, k=60)
        assert fused[0].score == pytest.approx(1 / 61 + 1 / 62)


@pytest.fixture(scope="module")
def hybrid(hybrid_index, tiny_corpus):
    """Loaded once: the encoder takes seconds to load on CPU."""
    return load_retriever(hybrid_index, tiny_corpus)


class TestDenseAndHybrid:
    def test_dense_part_is_a_dense_index(self, hybrid_index, tiny_corpus, hybrid):
        manifest = Manifest.read(hybrid_index / "dense")
        assert manifest.kind == "dense" and manifest.params["dim"] == 384
        assert manifest.corpus_sha256 == Manifest.read(hybrid_index).corpus_sha256
        assert hybrid.dense.kind == "dense" and hybrid.dense.doc_count == hybrid.doc_count

    def test_dense_finds_paraphrase(self, hybrid, tiny_corpus):
        dense = hybrid.dense
        passages = list(read_corpus(tiny_corpus))
        target = next(p for p in passages if p.title == "2001: A Space Odyssey")
        # No title words: only the meaning links the query to the passage.
        hits = dense.search(["science-fiction movie about astronauts and a computer in outer space", ""], 3)
        assert target.id in [h.id for h in hits[0]]
        assert hits[1] == []
        assert all(-1.0 <= h.score <= 1.0001 for h in hits[0])

    def test_hybrid_fuses_both(self, hybrid):
        assert hybrid.kind == "hybrid"
        query = ["Kubrick space film"]
        fused = hybrid.search(query, 5)[0]
        sparse = hybrid.bm25.search(query, 50)[0]
        dense = hybrid.dense.search(query, 50)[0]
        expected = reciprocal_rank_fusion([sparse, dense], topk=5)
        assert [h.id for h in fused] == [h.id for h in expected]
        assert fused[0].title == "2001: A Space Odyssey"
        assert hybrid.search([" "], 3) == [[]]
