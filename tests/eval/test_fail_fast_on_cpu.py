"""``masksearch eval`` checks its retriever before any model work: one line, exit 2, in seconds."""

from __future__ import annotations

import time

import pytest

from masksearch.cli.main import main


@pytest.mark.parametrize("case", ["not_an_index", "dead_url"])
def test_bad_retriever_fails_before_the_model(case, qa_parquet, tmp_path, free_port, monkeypatch, capsys):
    monkeypatch.setenv("MASKSEARCH_RETRIEVER_WAIT_S", "1")
    where = {
        "not_an_index": ["--index", str(tmp_path)],  # a folder, but no manifest.json
        "dead_url": ["--retriever-url", f"http://127.0.0.1:{free_port()}"],  # nothing listens
    }[case]
    out = tmp_path / "out"
    started = time.monotonic()
    # the model does not exist either: the retriever error must come first, before it is loaded
    rc = main(["eval", "--model", str(tmp_path / "no-model"), "--data", str(qa_parquet), *where,
               "--out", str(out), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert ("manifest.json" if case == "not_an_index" else "not ready within 1s") in err
    assert time.monotonic() - started < 15
    assert not out.exists() or not any(out.iterdir())
