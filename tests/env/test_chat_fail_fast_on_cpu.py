"""``masksearch chat`` checks its retriever before loading the model: one line, exit 2, in seconds."""

from __future__ import annotations

import time

import pytest

from masksearch.cli.main import main


@pytest.mark.parametrize("case", ["typo_index", "not_an_index", "dead_url"])
def test_bad_retriever_fails_before_the_model(case, tmp_path, free_port, monkeypatch, capsys):
    monkeypatch.setenv("MASKSEARCH_RETRIEVER_WAIT_S", "1")
    where = {
        "typo_index": ["--index", str(tmp_path / "typo")],  # exited 0 before (errors became text)
        "not_an_index": ["--index", str(tmp_path)],
        "dead_url": ["--retriever-url", f"http://127.0.0.1:{free_port()}"],
    }[case]
    started = time.monotonic()
    rc = main(["chat", "--model", str(tmp_path / "no-model"), *where, "Who wrote Tosca?"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "model" not in err.split("error:", 1)[1].split(":")[0]  # not the model's error
    assert ("index" if case != "dead_url" else "not ready within 1s") in err
    assert time.monotonic() - started < 15
