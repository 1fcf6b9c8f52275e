"""Span extractors (masksearch.data.spans): rule cases, optional spaCy, and the LLM extractor
against a real FastAPI server on 127.0.0.1 (started in a subprocess, killed to test failure)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import httpx
import pytest

from masksearch.data.spans import (
    EXTRACTORS,
    ExtractorError,
    ExtractorUnavailable,
    LLMSpanExtractor,
    RuleSpanExtractor,
    chat_completions_url,
    locate_spans,
    make_extractor,
    parse_span_list,
    register_extractor,
)

SERVER_SCRIPT = Path(__file__).with_name("ramp_llm_stub_server.py")
PASSAGE = "Ada Lovelace met Charles Babbage in London, where they discussed engines."


class TestRuleExtractor:
    @pytest.mark.parametrize(
        ("text", "span", "label"),
        [
            ("It was written by Stanley Kubrick in a year.", "Stanley Kubrick", "name"),  # multi-word name
            ("A painting by Willem de Kooning hangs here.", "Willem de Kooning", "name"),  # connector inside
            ("It was written with Arthur C. Clarke later.", "Arthur C. Clarke", "name"),  # initial
            ("It is Georges Seurat's most famous work.", "Georges Seurat", "name"),  # possessive dropped
            ("The war ended on 12 March 1990 quietly.", "12 March 1990", "date"),
            ("The war ended on March 12, 1990 quietly.", "March 12, 1990", "date"),
            ("Jazz grew in the 1950s and later.", "1950s", "date"),
            ("Music of the 19th century changed.", "19th century", "date"),
            ("The lake is 45 km long.", "45 km", "number"),
            ("It cost $3.5 million to build.", "$3.5 million", "number"),
            ("About 1,200 people live there.", "1,200 people", "number"),
            ('He wrote "The Sentinel" in a week.', "The Sentinel", "quoted"),
            ("The probe flew to Jupiter in the end.", "Jupiter", "proper_noun"),  # single, mid-sentence
        ],
    )
    def test_finds(self, text, span, label):
        found = {(s.text, s.label) for s in RuleSpanExtractor()(text)}
        assert (span, label) in found
        for s in RuleSpanExtractor()(text):
            assert text[s.start : s.end] == s.text

    @pytest.mark.parametrize(
        ("text", "not_span"),
        [
            ("However the river flows.", "However"),  # sentence-initial function word
            ("The Great Depression and Mexican muralists.", "Great Depression and Mexican"),  # 'and' splits
            ("Sunrise comes early.", "Sunrise"),  # single capitalised word at sentence start
        ],
    )
    def test_skips(self, text, not_span):
        assert not_span not in {s.text for s in RuleSpanExtractor()(text)}

    def test_empty_text(self):
        assert RuleSpanExtractor()("") == []


class TestRegistry:
    def test_unknown_name_lists_registered(self):
        with pytest.raises(
            ValueError, match=r"Unknown extractor 'nope'; registered: \['llm', 'rule', 'spacy'\]"
        ):
            make_extractor("nope")

    def test_duplicate_registration_is_refused(self):
        with pytest.raises(ValueError, match="already registered"):
            register_extractor("rule", RuleSpanExtractor)
        assert EXTRACTORS["rule"] is RuleSpanExtractor

    @pytest.mark.skipif(importlib.util.find_spec("spacy") is not None, reason="spaCy is installed here")
    def test_spacy_missing_is_a_clear_error(self):
        with pytest.raises(ExtractorUnavailable, match="pip install spacy"):
            make_extractor("spacy")

    def test_llm_needs_url_and_model(self, monkeypatch):
        for var in ("MASKSEARCH_LLM_BASE_URL", "OPENAI_BASE_URL", "MASKSEARCH_LLM_MODEL"):
            monkeypatch.delenv(var, raising=False)
        with pytest.raises(ExtractorUnavailable, match="endpoint"):
            make_extractor("llm")
        with pytest.raises(ExtractorUnavailable, match="model"):
            make_extractor("llm", base_url="http://127.0.0.1:1")


class TestParsing:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("http://h:1", "http://h:1/v1/chat/completions"),
            ("http://h:1/v1", "http://h:1/v1/chat/completions"),
            ("http://h:1/v1/chat/completions/", "http://h:1/v1/chat/completions"),
        ],
    )
    def test_url(self, url, expected):
        assert chat_completions_url(url) == expected

    def test_parse_and_locate(self):
        assert parse_span_list('```json\n["A", {"text": "B"}, 3, ""]\n```') == ["A", "B"]
        with pytest.raises(ExtractorError):
            parse_span_list("no array here")
        spans = locate_spans("Ada met charles.", ["Ada", "Charles", "missing"])
        assert [(s.text, s.start) for s in spans] == [("Ada", 0), ("charles", 8)]


# ---------------------------------------------------------------------------------------------
# LLM extractor against a real server
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm_server(start_http_service, free_port):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with start_http_service(
        [sys.executable, str(SERVER_SCRIPT), str(port)], f"{url}/stats", timeout=30
    ) as proc:
        yield url, proc


def _requests(url: str) -> int:
    return httpx.get(f"{url}/stats", timeout=5).json()["requests"]


class TestLLMExtractor:
    def test_extracts_locates_and_caches(self, llm_server, tmp_path):
        url, _ = llm_server
        ex = LLMSpanExtractor(base_url=url, model="stub", api_key="k", cache_dir=tmp_path, timeout=5)
        before = _requests(url)
        spans = ex(PASSAGE)
        assert [s.text for s in spans] == ["Ada Lovelace", "Charles Babbage", "London"]
        assert all(PASSAGE[s.start : s.end] == s.text for s in spans)
        assert _requests(url) == before + 1
        assert ex(PASSAGE) == spans  # second call: from the disk cache
        fresh = LLMSpanExtractor(base_url=url, model="stub", cache_dir=tmp_path, timeout=5)
        assert fresh(PASSAGE) == spans  # a new extractor reuses the same cache
        assert _requests(url) == before + 1
        assert httpx.get(f"{url}/stats").json()["auth"][-1] == "Bearer k"
        ex.close()

    def test_chatty_answer_is_parsed(self, llm_server, tmp_path):
        url, _ = llm_server
        ex = LLMSpanExtractor(base_url=url + "/v1", model="chatty", cache_dir=tmp_path, timeout=5)
        assert "London" in {s.text for s in ex(PASSAGE)}

    @pytest.mark.parametrize(
        ("model", "match"),
        [
            ("slow", "timed out|Timeout|timeout"),  # server sleeps 3 s, client timeout 0.5 s
            ("broken", "HTTP 500"),  # 5xx: retried, then an error
            ("garbage", "no JSON array"),  # unparsable answer
        ],
    )
    def test_failures_raise_extractor_error(self, llm_server, tmp_path, model, match):
        url, _ = llm_server
        ex = LLMSpanExtractor(base_url=url, model=model, cache_dir=tmp_path, timeout=0.5, retries=1)
        with pytest.raises(ExtractorError, match=match):
            ex(PASSAGE)
        assert not list(tmp_path.glob("*.json"))  # failures are not cached

    def test_env_configuration(self, llm_server, tmp_path, monkeypatch):
        url, _ = llm_server
        monkeypatch.setenv("MASKSEARCH_LLM_BASE_URL", url)
        monkeypatch.setenv("MASKSEARCH_LLM_MODEL", "stub")
        ex = make_extractor("llm", cache_dir=tmp_path)
        assert ex.url == f"{url}/v1/chat/completions" and ex(PASSAGE)

    def test_server_down_is_an_error_not_a_hang(self, tmp_path, start_http_service, free_port):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with start_http_service([sys.executable, str(SERVER_SCRIPT), str(port)], f"{url}/stats", timeout=30):
            ex = LLMSpanExtractor(base_url=url, model="stub", cache_dir=tmp_path, timeout=2, retries=1)
            assert ex("Alpha Beta met Gamma.")  # then the server is killed
        with pytest.raises(ExtractorError, match="failed"):
            ex("Another passage with Delta.")


def test_cli_key_from_named_env_var_reaches_the_server_only(
    llm_server, tmp_path, monkeypatch, capsys, caplog
):
    """``ramp build --llm-api-key-env NAME``: the key is sent as a bearer header and lands in no output,
    log line or file (issue 21)."""
    from masksearch.cli import main as cli_main
    from masksearch.data.corpus import Passage, write_passages_jsonl

    url, _ = llm_server
    secret = "sk-ramp-Uq2secret9"
    monkeypatch.setenv("MY_RAMP_KEY", secret)
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ["masksearch.data.ramp_cli"])
    corpus = tmp_path / "c.jsonl"
    texts = [PASSAGE, "Grace Hopper met Alan Turing in Paris, where they discussed compilers."]
    write_passages_jsonl([Passage(str(i), f"T{i}", t) for i, t in enumerate(texts)], corpus)
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["--log-level", "DEBUG", "ramp", "build", "--corpus", str(corpus), "--out", str(out),
            "--extractor", "llm", "--llm-url", url, "--llm-model", "stub", "--llm-api-key-env", "MY_RAMP_KEY",
            "--llm-cache", str(cache), "--min-words", "5", "--max-masks", "1", "--val-fraction", "0",
            "--no-progress"]  # fmt: skip
    with caplog.at_level("DEBUG"):
        assert cli_main.main(argv) == 0
    assert httpx.get(f"{url}/stats", timeout=5).json()["auth"][-1] == f"Bearer {secret}"
    printed = capsys.readouterr()
    assert secret not in printed.out + printed.err + caplog.text
    written = [p for p in [*out.rglob("*"), *cache.rglob("*")] if p.is_file()]
    assert (out / "train.parquet") in written and not [
        p for p in written if secret.encode() in p.read_bytes()
    ]
