"""Corpus building and reading (masksearch.data.corpus and the ``masksearch corpus build`` command)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pandas as pd
import pytest

from masksearch.cli import main as cli_main
from masksearch.data.corpus import (
    BuildReport,
    CorpusError,
    Passage,
    build_corpus,
    chunk_passage,
    embedded_corpus_path,
    iter_passages,
    read_corpus,
)


def run_cli(argv: list[str], monkeypatch) -> int:
    """The real ``masksearch`` dispatcher, limited to our module (others' modules may be in flux)."""
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ["masksearch.data.corpus_cli"])
    return cli_main.main(argv)


def write_jsonl(path: Path, rows: list) -> Path:
    with path.open("wb") as fh:
        for row in rows:
            fh.write(row if isinstance(row, bytes) else (json.dumps(row) + "\n").encode())
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class TestPassage:
    def test_contents_round_trip(self):
        p = Passage("7", "Paris", "Capital of France.")
        assert p.contents == "Paris\nCapital of France."
        assert Passage.from_contents("7", p.contents) == p

    def test_search_r1_quoted_title_is_unquoted(self):
        # wiki-18 rows look like "\"Title\"\ntext"
        assert Passage.from_contents("1", '"Paris"\nCapital.') == Passage("1", "Paris", "Capital.")

    def test_frozen_and_picklable(self):
        p = Passage("1", "T", "x")
        with pytest.raises(AttributeError):
            p.title = "other"  # type: ignore[misc]
        assert pickle.loads(pickle.dumps(p)) == p


class TestEmbedded:
    def test_cli_build_with_limit(self, tmp_path, monkeypatch, capsys):
        out = tmp_path / "c.jsonl"
        assert (
            run_cli(["corpus", "build", "--out", str(out), "--limit", "40", "--no-progress"], monkeypatch)
            == 0
        )
        rows = lines(out)
        assert len(rows) >= 40  # chunking can only add passages
        assert all(set(r) == {"id", "contents"} for r in rows)
        assert len({r["id"] for r in rows}) == len(rows)
        assert all(r["contents"].split("\n", 1)[0] and r["contents"].split("\n", 1)[1] for r in rows)
        assert "wrote" in capsys.readouterr().out

    def test_embedded_corpus_path_builds_once(self, tmp_path, monkeypatch):
        monkeypatch.setenv("MASKSEARCH_CACHE", str(tmp_path / "cache"))
        path = embedded_corpus_path()
        assert path.parent == tmp_path / "cache" / "corpus"
        mtime = path.stat().st_mtime_ns
        assert embedded_corpus_path() == path and path.stat().st_mtime_ns == mtime  # not rebuilt
        passages = list(read_corpus(path))
        assert len(passages) > 10_000
        assert max(len(p.text.split()) for p in passages) <= 100

    def test_explicit_cache_dir(self, tmp_path):
        path = embedded_corpus_path(tmp_path / "here", chunk_words=0)
        assert path.parent == tmp_path / "here" and path.is_file()


class TestSources:
    @pytest.mark.parametrize(
        "rows",
        [
            # id/title/text columns
            [
                {"id": "a", "title": "Alpha", "text": "first text"},
                {"id": "b", "title": "Beta", "text": "second"},
            ],
            # Search-R1 rows: contents with a quoted title
            [{"id": "a", "contents": '"Alpha"\nfirst text'}, {"id": "b", "contents": '"Beta"\nsecond'}],
            # integer ids become strings
            [{"id": 1, "title": "Alpha", "text": "first text"}, {"id": 2, "title": "Beta", "text": "second"}],
        ],
    )
    def test_jsonl(self, tmp_path, rows):
        src = write_jsonl(tmp_path / "src.jsonl", rows)
        report = build_corpus(tmp_path / "out.jsonl", src, show_progress=False)
        assert (report.passages, report.bad_rows) == (2, 0)
        got = list(read_corpus(tmp_path / "out.jsonl"))
        assert [p.title for p in got] == ["Alpha", "Beta"]
        assert got[0].text == "first text"

    def test_parquet(self, tmp_path):
        src = tmp_path / "src.parquet"
        pd.DataFrame({"id": ["x", "y"], "title": ["X", "Y"], "text": ["ex text", "why text"]}).to_parquet(src)
        report = build_corpus(tmp_path / "out.jsonl", src, show_progress=False)
        assert report.passages == 2
        assert [p.id for p in read_corpus(tmp_path / "out.jsonl")] == ["x", "y"]

    def test_read_corpus_reads_parquet_directly(self, tmp_path):
        src = tmp_path / "src.parquet"
        pd.DataFrame({"id": ["x"], "contents": ["X\nex text"]}).to_parquet(src)
        assert list(read_corpus(src)) == [Passage("x", "X", "ex text")]

    def test_unknown_source(self, tmp_path):
        with pytest.raises(CorpusError, match="not found"):
            build_corpus(tmp_path / "o.jsonl", tmp_path / "missing.jsonl", show_progress=False)
        (tmp_path / "c.csv").write_text("id,text\n")
        with pytest.raises(CorpusError, match="unsupported"):
            build_corpus(tmp_path / "o.jsonl", tmp_path / "c.csv", show_progress=False)


class TestChunking:
    def test_long_document_keeps_title(self):
        doc = Passage("d", "Title", " ".join(f"w{i}" for i in range(250)))
        pieces = chunk_passage(doc, 100)
        assert [p.id for p in pieces] == ["d-0", "d-1", "d-2"]
        assert all(p.title == "Title" for p in pieces)
        assert all(len(p.text.split()) <= 100 for p in pieces)
        assert " ".join(p.text for p in pieces) == doc.text  # nothing lost or duplicated

    @pytest.mark.parametrize(
        ("n_words", "chunk_words", "expected"),
        [
            (100, 100, 1),  # exactly one chunk: id unchanged
            (101, 100, 2),  # two near-equal halves, not 100 + 1
            (500, 0, 1),  # 0 disables chunking
        ],
    )
    def test_chunk_counts(self, n_words, chunk_words, expected):
        doc = Passage("d", "T", " ".join(["w"] * n_words))
        pieces = chunk_passage(doc, chunk_words)
        assert len(pieces) == expected
        if expected == 1:
            assert pieces[0] is doc
        else:
            sizes = [len(p.text.split()) for p in pieces]
            assert max(sizes) - min(sizes) <= 1

    def test_build_chunks(self, tmp_path):
        src = write_jsonl(tmp_path / "s.jsonl", [{"id": "d", "title": "T", "text": " ".join(["w"] * 30)}])
        report = build_corpus(tmp_path / "o.jsonl", src, chunk_words=10, show_progress=False)
        assert (report.documents, report.passages) == (1, 3)
        assert {p.title for p in read_corpus(tmp_path / "o.jsonl")} == {"T"}


BAD_ROWS = [
    (b'{"title": "T", "text": "no id"}\n', "missing 'id'"),
    (b'{"id": "1", "title": "T"}\n', "missing 'text'"),
    (b'{"id": "2", "text": "no title"}\n', "missing 'title'"),
    (b'{"id": "3", "title": "T", "text": "   "}\n', "empty text"),
    (b'{"id": "4", "title": "T", "text": "caf\xe9"}\n', "not UTF-8"),  # latin-1 byte
    (b'{"id": "5", "title": "T", "text": \n', "bad JSON"),
    (b'["a", "list"]\n', "expected a JSON object"),
    (b'{"id": "ok", "title": "T", "text": "dup"}\n', "duplicate id"),
    (b'{"id": {"x": 1}, "title": "T", "text": "t"}\n', "'id' is dict"),
]


class TestBadRows:
    @pytest.fixture
    def source(self, tmp_path) -> Path:
        good = b'{"id": "ok", "title": "Good", "text": "fine text"}\n'
        return write_jsonl(tmp_path / "mixed.jsonl", [good, *[raw for raw, _ in BAD_ROWS]])

    def test_counted_and_reported(self, source, tmp_path):
        report = build_corpus(tmp_path / "o.jsonl", source, show_progress=False)
        assert report.passages == 1
        assert report.bad_rows == len(BAD_ROWS)
        assert len(report.bad_examples) == 5  # the first few are shown
        for example, (_, reason) in zip(report.bad_examples, BAD_ROWS, strict=False):
            assert reason in example
        assert f"... and {len(BAD_ROWS) - 5} more" in report.summary()

    @pytest.mark.parametrize(("raw", "reason"), BAD_ROWS)
    def test_each_reason(self, tmp_path, raw, reason):
        good = b'{"id": "ok", "title": "Good", "text": "fine text"}\n'
        report = BuildReport(out=tmp_path)
        list(iter_passages(write_jsonl(tmp_path / "s.jsonl", [good, raw]), report=report))
        assert report.bad_rows == 1 and reason in report.bad_examples[0]

    def test_strict_fails(self, source, tmp_path):
        with pytest.raises(CorpusError, match="--strict"):
            build_corpus(tmp_path / "o.jsonl", source, strict=True, show_progress=False)
        assert not (tmp_path / "o.jsonl").exists()  # nothing half-written

    def test_strict_cli_exit_code(self, source, tmp_path, monkeypatch, capsys):
        argv = ["corpus", "build", "--out", str(tmp_path / "o.jsonl"), "--source", str(source), "--strict"]
        assert run_cli(argv, monkeypatch) == 2
        err = capsys.readouterr().err
        assert "error:" in err and "missing 'id'" in err and "Traceback" not in err

    def test_all_bad_is_an_error(self, tmp_path):
        src = write_jsonl(tmp_path / "bad.jsonl", [b"not json\n"])
        with pytest.raises(CorpusError, match="no usable rows"):
            build_corpus(tmp_path / "o.jsonl", src, show_progress=False)

    def test_read_corpus_rejects_bad_rows(self, tmp_path):
        src = write_jsonl(tmp_path / "bad.jsonl", [b'{"id": "1", "contents": "T\\nok"}\n', b"{oops\n"])
        with pytest.raises(CorpusError, match="line 2"):
            list(read_corpus(src))


SMALL = [{"id": "a", "title": "Alpha", "text": "first text"}, {"id": "b", "title": "", "text": "no title"}]


class TestOutput:
    """Issue 21: the output format follows the name, impossible paths are one line, modes follow the umask."""

    @pytest.mark.parametrize("name", ["c.parquet", "c.jsonl", "c.json", "c.ndjson"])
    def test_format_follows_the_name(self, tmp_path, monkeypatch, name):
        src = write_jsonl(tmp_path / "src.jsonl", SMALL)
        out = tmp_path / name
        assert (
            run_cli(
                ["corpus", "build", "--out", str(out), "--source", str(src), "--no-progress"], monkeypatch
            )
            == 0
        )
        is_parquet = out.read_bytes()[:4] == b"PAR1"
        assert is_parquet == (name == "c.parquet")
        if is_parquet:
            assert pd.read_parquet(out).to_dict("records") == [
                {"id": "a", "contents": "Alpha\nfirst text"},
                {"id": "b", "contents": "\nno title"},
            ]
        # what index build reads (read_corpus), whatever the format
        assert list(read_corpus(out)) == [Passage("a", "Alpha", "first text"), Passage("b", "", "no title")]

    def test_parquet_report_checksums_the_file(self, tmp_path):
        from masksearch.data.corpus import file_sha256

        src = write_jsonl(tmp_path / "src.jsonl", SMALL)
        for name in ("c.parquet", "c.jsonl"):
            report = build_corpus(tmp_path / name, src, show_progress=False)
            assert report.sha256 == file_sha256(tmp_path / name)

    @pytest.mark.parametrize(
        ("out", "match"),
        [
            ("c.txt", "must end with .jsonl, .json, .ndjson or .parquet"),  # unknown suffix: refused
            ("c.PARQUET", "must end with"),  # search_tool's reader tells formats apart case-sensitively
            ("adir", "adir is a folder"),  # an existing folder (was IsADirectoryError)
            ("adir.jsonl", "is a folder"),  # a folder with a corpus-like name
            ("afile/c.jsonl", "afile is a file, not a folder"),  # under a file
        ],
    )
    def test_bad_out_is_one_line(self, tmp_path, monkeypatch, capsys, out, match):
        (tmp_path / "adir").mkdir()
        (tmp_path / "adir.jsonl").mkdir()
        (tmp_path / "afile").write_text("x")
        src = write_jsonl(tmp_path / "src.jsonl", SMALL)
        assert (
            run_cli(["corpus", "build", "--out", str(tmp_path / out), "--source", str(src)], monkeypatch) == 2
        )
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert err.startswith("masksearch corpus: error: ") and match in err

    @pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
    @pytest.mark.parametrize("name", ["c.jsonl", "c.parquet"])
    def test_file_mode_follows_the_umask(self, tmp_path, umask, mode, name):
        import os
        import stat

        src = write_jsonl(tmp_path / "src.jsonl", SMALL)
        old = os.umask(umask)
        try:
            build_corpus(tmp_path / name, src, show_progress=False)
        finally:
            os.umask(old)
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode
