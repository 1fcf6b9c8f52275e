"""A new user's first minutes with the retrieval CLI (issue 21): ``retriever serve`` binds before it
says ready and names the port it really got, ``search | head`` ends quietly, corpora without a title
line index, no DEBUG lines at INFO, index folders follow the umask, and every flag is documented.

Real files, real processes, real sockets on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from masksearch.search_tool import cli as search_cli
from masksearch.search_tool.corpus import Passage, read_corpus
from masksearch.search_tool.protocol import Document
from masksearch.search_tool.retrievers import build_index, load_retriever
from masksearch.search_tool.server import bind_socket

CLI = [sys.executable, "-m", "masksearch.search_tool.cli"]
ENV = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
STARTUP_S = 90.0  # a fresh interpreter plus an index load, on a loaded 2-core machine
READY_RE = re.compile(r"on (http://127\.0\.0\.1:(\d+)) .*: ready$")


def _says_ready(text: str) -> bool:
    return re.search(r"\bready\b", text) is not None  # not "already" (in use)


def _last_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines and "Traceback" not in err, err
    return lines[-1]


# ---------------------------------------------------------------------------------------------
# retriever serve: bind first, then say ready with the real address
# ---------------------------------------------------------------------------------------------


class _Lines:
    """Lines of a child's stderr, read on a thread so the test can wait with a deadline."""

    def __init__(self, proc: subprocess.Popen):
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(proc.stderr,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if found := pattern.search(line):
                return found
        raise AssertionError(f"no line matching {pattern.pattern!r}; got:\n" + "\n".join(self.seen))

    def rest(self, timeout_s: float = 30.0) -> str:
        """Every line not yet seen, up to the end of the stream (the child has exited)."""
        lines = []
        while (line := self._queue.get(timeout=timeout_s)) is not None:
            lines.append(line)
        self.seen += lines
        return "\n".join(lines)


@pytest.fixture
def serve_process(bm25_index) -> Iterator:
    """``serve_process(*args)``: a ``retriever serve`` child with stderr piped; killed afterwards."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> tuple[subprocess.Popen, _Lines]:
        argv = [*CLI, "retriever", "serve", "--index", str(bm25_index), "--backend", "numpy", *args]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            # Ctrl-C as a terminal delivers it: a suite started in the background (`cmd &` without job
            # control) inherits SIGINT ignored, and the server would then never see the test's SIGINT
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        started.append(proc)
        return proc, _Lines(proc)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


class TestServeBinding:
    @pytest.mark.parametrize(
        "port",
        [
            "99999",  # above 65535: used to print ":99999 … ready" and listen on a random port
            "65536",  # first value past the range
            "-1",  # negative
            "eighty",  # not a number
        ],
    )
    def test_port_outside_the_range_is_refused_by_argparse(self, bm25_index, port, capsys):
        with pytest.raises(SystemExit) as exit_info:
            search_cli.main(["retriever", "serve", "--index", str(bm25_index), "--port", port])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert _last_error(err).startswith("masksearch retriever serve: error: argument --port:")
        assert not _says_ready(err) and "serving" not in err

    def test_port_in_use_is_one_line_before_anything_says_ready(self, bm25_index, capsys):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            argv = ["retriever", "serve", "--index", str(bm25_index), "--port", str(port)]
            assert search_cli.main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1, captured.err
        assert captured.err.startswith(f"masksearch retriever: error: cannot listen on 127.0.0.1:{port}")
        assert "Address already in use" in captured.err and "--port 0" in captured.err
        assert not _says_ready(captured.err)

    @pytest.mark.parametrize(
        ("host", "expected"),
        [
            ("192.0.2.1", "must be an address of this machine"),  # TEST-NET-1: valid, not ours
            ("no-such-host.invalid", "cannot resolve"),  # .invalid never resolves
        ],
    )
    def test_bad_host_is_one_line(self, bm25_index, host, expected, capsys):
        argv = ["retriever", "serve", "--index", str(bm25_index), "--host", host, "--port", "0"]
        assert search_cli.main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and expected in err and not _says_ready(err), err

    def test_bind_socket_refuses_out_of_range_ports(self):
        with pytest.raises(ValueError, match=r"outside 0\.\.65535"):
            bind_socket("127.0.0.1", 70000)

    def test_bound_socket_refuses_connections_until_served(self):
        """Bound while the index loads: callers get 'connection refused', not a hang."""
        with bind_socket("127.0.0.1", 0) as sock:
            port = sock.getsockname()[1]
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()

    def test_port_zero_prints_the_port_it_got_and_serves_there(self, serve_process):
        proc, lines = serve_process("--port", "0")
        found = lines.wait_for(READY_RE, STARTUP_S)
        url, port = found.group(1), int(found.group(2))
        assert port > 0
        assert not any(_says_ready(line) for line in lines.seen[:-1])  # one ready line, and last
        health = httpx.get(url + "/health", timeout=10).json()
        assert health["ready"] is True and health["doc_count"] > 0
        hits = httpx.post(url + "/retrieve", json={"queries": ["algebra"], "topk": 1}, timeout=10)
        assert hits.status_code == 200 and len(hits.json()["result"][0]) == 1
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean shutdown, no KeyboardInterrupt traceback
        assert proc.wait(timeout=30) == 130
        rest = lines.rest()
        assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest

    def test_a_second_server_on_the_same_port_fails_in_one_line(self, serve_process, bm25_index):
        _first, lines = serve_process("--port", "0")
        port = lines.wait_for(READY_RE, STARTUP_S).group(2)
        second, second_lines = serve_process("--port", port)
        assert second.wait(timeout=STARTUP_S) == 2
        err = second_lines.rest()
        assert _last_error(err).startswith(f"masksearch retriever: error: cannot listen on 127.0.0.1:{port}")
        assert not _says_ready(err) and "Errno 98" not in err


# ---------------------------------------------------------------------------------------------
# search | head -1: a closed stdout ends quietly
# ---------------------------------------------------------------------------------------------


class TestClosedStdout:
    def test_reader_gone_before_the_first_write(self, bm25_index):
        argv = [*CLI, "--log-level", "WARNING", "search", "--index", str(bm25_index), "--backend", "numpy"]
        proc = subprocess.Popen(
            [*argv, "algebra", "music"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
        )
        proc.stdout.close()  # nobody reads: the child's first write gets EPIPE
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=STARTUP_S) == 0
        assert err == "", err

    @pytest.mark.skipif(shutil.which("bash") is None or shutil.which("head") is None, reason="needs bash")
    def test_piped_into_head(self, bm25_index):
        # ~40 queries x 20 hits of JSON is far more than a pipe holds, so the writer must meet the
        # closed pipe after head exits.
        queries = [f"history of topic {i}" for i in range(40)]
        argv = [*CLI, "search", "--index", str(bm25_index), "--backend", "numpy", "--json", "--topk", "20"]
        script = "set -o pipefail; " + " ".join(map(_quote, [*argv, *queries])) + " | head -1"
        proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=ENV, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "{\n"
        assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


# ---------------------------------------------------------------------------------------------
# Search-R1 corpora without a title line
# ---------------------------------------------------------------------------------------------

UNTITLED = [
    ("u1", "The Eiffel Tower is a wrought-iron lattice tower in Paris."),
    ("u2", "The Colosseum is an ancient amphitheatre in the centre of Rome."),
    ("u3", "Mount Fuji is the highest mountain in Japan."),
    ("u4", "The Nile is a major river flowing north through Africa."),
]


class TestUntitledContents:
    @given(
        title=st.text(st.characters(blacklist_characters='\n\r"', blacklist_categories=("Cs",)), max_size=12),
        text=st.text(
            st.characters(blacklist_characters="\r", blacklist_categories=("Cs",)), min_size=1, max_size=40
        ),
    )
    def test_contents_round_trip(self, title, text):
        """What data writes (``Passage.contents``) reads back as the same passage, titled or not."""
        passage = Passage(id="1", title=title.strip(), text=text.strip())
        assume(passage.text and not any(c.isspace() and c != " " for c in passage.title))
        assert Passage.from_contents("1", passage.contents) == passage

    @pytest.mark.parametrize(
        ("contents", "title", "text"),
        [
            ("Only a line of text.", "", "Only a line of text."),  # no title line: all of it is text
            ("  Padded line.  \n", "", "Padded line."),  # a trailing newline is not a title line
            ("Paris\n", "", "Paris"),  # nor is a lone line before it: the row is still searchable
            ("Title\nBody.", "Title", "Body."),  # the usual Search-R1 shape
            ('"Quoted"\nBody.', "Quoted", "Body."),  # wiki-18 quotes its titles
            ("\nBody only.", "", "Body only."),  # an explicitly empty title (what we write back)
            ("Title\nline 1\nline 2", "Title", "line 1\nline 2"),  # the text keeps its own breaks
            ("\nline 1\nline 2", "", "line 1\nline 2"),  # untitled multi-line text (what we write back)
        ],
    )
    def test_from_contents(self, contents, title, text):
        passage = Passage.from_contents("7", contents)
        assert (passage.title, passage.text) == (title, text)
        assert Passage.from_contents("7", passage.contents) == passage  # round trip

    @pytest.mark.parametrize(
        ("contents", "title", "text"),
        [
            ("Only a line of text.", "", "Only a line of text."),
            ("Title\nBody.", "Title", "Body."),
        ],
    )
    def test_wire_documents_read_the_same_way(self, contents, title, text):
        hit = Document(id="7", contents=contents).to_hit(1.0)
        assert (hit.title, hit.text) == (title, text)

    @staticmethod
    def _write(path: Path) -> Path:
        rows = [{"id": doc_id, "contents": text} for doc_id, text in UNTITLED]
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), path)
        else:
            path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return path

    @pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
    def test_index_build_and_search(self, tmp_path, suffix, capsys):
        corpus = self._write(tmp_path / f"untitled{suffix}")
        assert [p.text for p in read_corpus(corpus)] == [text for _, text in UNTITLED]
        out = tmp_path / "idx"
        argv = ["index", "build", "--corpus", str(corpus), "--out", str(out), "--no-progress"]
        assert search_cli.main(argv) == 0
        assert "built bm25 index of 4 passages" in capsys.readouterr().out
        hits = load_retriever(out, corpus, backend="numpy").search(["Colosseum Rome"], 2)[0]
        assert hits[0].id == "u2" and hits[0].title == "" and hits[0].text == UNTITLED[1][1]
        argv = ["search", "--index", str(out), "--backend", "numpy", "--topk", "1", "Mount Fuji"]
        assert search_cli.main(argv) == 0
        assert "1. (no title)  [id u3" in capsys.readouterr().out

    def test_corpus_build_keeps_every_row(self, tmp_path):
        """``masksearch corpus build`` (data) validates rows with search_tool's reader: no bad rows."""
        from masksearch.data.corpus import build_corpus

        source = self._write(tmp_path / "untitled.jsonl")
        report = build_corpus(tmp_path / "corpus.jsonl", source, show_progress=False)
        assert (report.passages, report.bad_rows) == (len(UNTITLED), 0)

    def test_empty_contents_still_refused(self, tmp_path):
        corpus = tmp_path / "bad.jsonl"
        corpus.write_text(json.dumps({"id": "1", "contents": " \n \t"}) + "\n")  # whitespace only
        with pytest.raises(ValueError, match="empty text"):
            list(read_corpus(corpus))


# ---------------------------------------------------------------------------------------------
# Logging levels and folder modes
# ---------------------------------------------------------------------------------------------


class TestLoggingAndModes:
    def test_no_debug_lines_at_info(self, tmp_path):
        corpus = TestUntitledContents._write(tmp_path / "c.jsonl")
        argv = [*CLI, "--log-level", "INFO", "index", "build", "--corpus", str(corpus)]
        proc = subprocess.run(
            [*argv, "--out", str(tmp_path / "idx")], capture_output=True, text=True, env=ENV, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        assert "INFO masksearch.search_tool.retrievers: built bm25 index" in proc.stderr
        assert not [line for line in proc.stderr.splitlines() if line.startswith("DEBUG")], proc.stderr

    def test_bm25s_logger_follows_the_root_level(self):
        import logging

        from masksearch.search_tool.bm25 import _bm25s

        _bm25s()  # bm25s sets its logger to DEBUG at import; ours puts it back
        assert logging.getLogger("bm25s").level == logging.NOTSET

    @pytest.mark.parametrize(
        ("umask", "mode"),
        [
            (0o022, 0o755),  # the common default: readable by everyone, as mkdir would make it
            (0o027, 0o750),  # a stricter umask is honoured too
        ],
    )
    def test_index_folder_follows_the_umask(self, tmp_path, umask, mode):
        corpus = TestUntitledContents._write(tmp_path / "c.jsonl")
        old = os.umask(umask)
        try:
            out = tmp_path / "idx"
            build_index(corpus, "bm25", out, show_progress=False)
        finally:
            os.umask(old)
        assert stat.S_IMODE(out.stat().st_mode) == mode
        for path in out.rglob("*"):  # the files and sub-folders inside follow it as well
            expected = mode if path.is_dir() else mode & 0o666
            assert stat.S_IMODE(path.stat().st_mode) == expected, path


# ---------------------------------------------------------------------------------------------
# Every flag documented
# ---------------------------------------------------------------------------------------------


def _options(
    parser: argparse.ArgumentParser, path: str = "masksearch"
) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield f"{path} {'/'.join(action.option_strings)}", action


class TestHelp:
    def test_every_flag_has_help_stating_its_default(self):
        flags = dict(_options(search_cli.build_parser()))
        assert "masksearch retriever serve --port" in flags and len(flags) > 30
        missing = [name for name, action in flags.items() if not (action.help or "").strip()]
        assert not missing, missing
        unstated = [
            name
            for name, action in flags.items()
            if action.default not in (None, False, argparse.SUPPRESS) and "default" not in action.help.lower()
        ]
        assert not unstated, unstated

    @pytest.mark.parametrize("command", ["search", "retriever serve"])
    def test_backend_help_explains_each_choice(self, command):
        flags = dict(_options(search_cli.build_parser()))
        text = flags[f"masksearch {command} --backend"].help
        for word in ("numba", "numpy", "auto", "default: auto"):
            assert word in text, text
