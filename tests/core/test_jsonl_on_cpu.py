"""core.jsonl.read_jsonl: the objects of a JSON-lines file; blank, torn and non-object lines skipped.
set_aside / read_jsonl_parts: the lines a truncating writer (verl's file logger) would erase on resume."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masksearch.core.jsonl import (
    NOT_AN_OBJECT,
    UNREADABLE,
    discard_parts,
    read_jsonl,
    read_jsonl_parts,
    set_aside,
)


def _read(path: Path, **kwargs) -> tuple[list[dict], list[tuple[int, str]]]:
    skipped: list[tuple[int, str]] = []
    records = list(read_jsonl(path, on_skip=lambda n, why: skipped.append((n, why)), **kwargs))
    return records, skipped


class TestSkippingRules:
    @pytest.mark.parametrize(
        ("text", "records", "skipped"),
        [
            ('{"a": 1}\n{"a": 2}\n', [{"a": 1}, {"a": 2}], []),  # plain file
            ('{"a": 1}', [{"a": 1}], []),  # no newline after the last line
            ('{"a": 1}\r\n{"a": 2}\r\n', [{"a": 1}, {"a": 2}], []),  # Windows line ends
            ('\n  \n{"a": 1}\n\n', [{"a": 1}], []),  # blank lines: passed over, not reported
            ('{"a": 1}\n{"a": 2', [{"a": 1}], [(2, UNREADABLE)]),  # torn last line (killed writer)
            # a torn line, then the lines a resumed run appended
            ('{"a": 1}\n{"a"\n{"a": 3}\n', [{"a": 1}, {"a": 3}], [(2, UNREADABLE)]),
            # valid JSON but not an object: skipped and reported
            ('[1, 2]\n3\n"s"\nnull\n', [], [(n, NOT_AN_OBJECT) for n in (1, 2, 3, 4)]),
            ("", [], []),  # empty file
            ('{"s": "a\u2028b"}\n', [{"s": "a\u2028b"}], []),  # a raw U+2028 inside a string is no line end
        ],
    )
    def test_table(self, tmp_path, text, records, skipped):
        path = tmp_path / "f.jsonl"
        path.write_text(text, encoding="utf-8", newline="")
        assert _read(path) == (records, skipped)

    def test_missing_file_yields_nothing(self, tmp_path):
        assert _read(tmp_path / "absent.jsonl") == ([], [])

    def test_a_folder_yields_nothing(self, tmp_path):
        assert _read(tmp_path) == ([], [])

    def test_without_on_skip_bad_lines_are_dropped_quietly(self, tmp_path):
        path = tmp_path / "f.jsonl"
        path.write_text('{"a": 1}\nnot json\n[]\n', encoding="utf-8")
        assert list(read_jsonl(str(path))) == [{"a": 1}]  # a str path works too


class TestDecoding:
    BAD = b'{"a": "\xff"}\n{"b": 1}\n'

    def test_strict_by_default(self, tmp_path):
        path = tmp_path / "f.jsonl"
        path.write_bytes(self.BAD)
        with pytest.raises(UnicodeDecodeError):
            list(read_jsonl(path))

    def test_replace_keeps_the_line(self, tmp_path):
        path = tmp_path / "f.jsonl"
        path.write_bytes(self.BAD)
        assert list(read_jsonl(path, errors="replace")) == [{"a": "\ufffd"}, {"b": 1}]


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_lines = st.one_of(
    _json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),  # any JSON value on one line
    st.sampled_from(["", "   ", '{"torn": ', "not json", "{'single': 'quotes'}"]),  # blank or unreadable
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_lines, max_size=8))
def test_yields_exactly_the_object_lines_and_reports_every_other_non_blank_line(lines):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.jsonl"
        path.write_text("\n".join(lines), encoding="utf-8")
        records, skipped = _read(path)
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            parsed.append((number, json.loads(line)))
        except ValueError:
            parsed.append((number, ... if not line.strip() else None))
    assert records == [v for _, v in parsed if isinstance(v, dict)]
    assert [n for n, _ in skipped] == [n for n, v in parsed if v is not ... and not isinstance(v, dict)]


def test_docstring_example_runs():
    import doctest

    import masksearch.core.jsonl as module

    assert doctest.testmod(module).failed == 0


class TestSetAside:
    def test_each_restart_keeps_the_earlier_lines_in_order(self, tmp_path):
        log = tmp_path / "metrics.jsonl"
        for step in (1, 2, 3):  # three attempts, each truncating the file as verl's logger does
            kept = set_aside(log)
            assert kept == (None if step == 1 else tmp_path / f"metrics.jsonl.part{step - 1}")
            log.write_text(json.dumps({"step": step}) + "\n", encoding="utf-8")
        assert [r["step"] for r in read_jsonl_parts(log)] == [1, 2, 3]
        assert [r["step"] for r in read_jsonl(log)] == [3]

    def test_nothing_to_keep(self, tmp_path):
        log = tmp_path / "metrics.jsonl"
        assert set_aside(log) is None  # no file
        log.write_text("", encoding="utf-8")
        assert set_aside(log) is None and log.exists()  # an empty file stays
        assert list(read_jsonl_parts(log)) == []

    def test_parts_sort_by_number_and_other_files_are_not_parts(self, tmp_path):
        log = tmp_path / "m[1].jsonl"  # glob characters in the name
        for k in (10, 2, 1):
            (tmp_path / f"m[1].jsonl.part{k}").write_text(json.dumps({"k": k}) + "\n", encoding="utf-8")
        (tmp_path / "m[1].jsonl.partial").write_text('{"k": "no"}\n', encoding="utf-8")
        log.write_text('{"k": "now"}\n', encoding="utf-8")
        assert [r["k"] for r in read_jsonl_parts(log)] == [1, 2, 10, "now"]
        assert set_aside(log) == tmp_path / "m[1].jsonl.part11"
        assert discard_parts(log) == 4 and not list(tmp_path.glob("*.part[0-9]*"))
        assert (tmp_path / "m[1].jsonl.partial").is_file()  # not a part: kept
