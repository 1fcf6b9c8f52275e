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


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--dtype", "float33", "--dtype 'float33': choose one of"),  # typo of float32
        ("--device", "cuad", "--device 'cuad': not a torch device"),  # typo of cuda
    ],
)
def test_device_and_dtype_typos(flag, value, needle, qa_parquet, qa_index, tmp_path, capsys):
    rc = main(["eval", "--model", "x/y", "--data", str(qa_parquet), "--index", str(qa_index),
               "--out", str(tmp_path / "o"), flag, value, "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_out_is_a_file(qa_parquet, qa_index, tmp_path, capsys):
    out = tmp_path / "results.txt"
    out.write_text("not a folder")
    rc = main(["eval", "--model", "x/y", "--data", str(qa_parquet), "--index", str(qa_index),
               "--out", str(out), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "is a file" in err, err
    assert out.read_text() == "not a folder"


def test_overwrite_keeps_old_results_when_the_model_does_not_load(qa_parquet, qa_index, tmp_path, capsys):
    from masksearch.eval.runner import RESULTS_FILE, RUN_FILE, TRAJECTORIES_FILE

    out = tmp_path / "run"
    out.mkdir()
    for name in (TRAJECTORIES_FILE, RESULTS_FILE, RUN_FILE):
        (out / name).write_text("{}\n")
    rc = main(["eval", "--model", str(tmp_path / "mistyped-model"), "--data", str(qa_parquet),
               "--index", str(qa_index), "--out", str(out), "--overwrite", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in out.iterdir()) == sorted([TRAJECTORIES_FILE, RESULTS_FILE, RUN_FILE])


def test_judge_without_url(qa_parquet, qa_index, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MASKSEARCH_JUDGE_URL", raising=False)
    rc = main(["eval", "--model", "x/y", "--data", str(qa_parquet), "--index", str(qa_index),
               "--out", str(tmp_path / "o"), "--judge", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "MASKSEARCH_JUDGE_URL" in err, err
