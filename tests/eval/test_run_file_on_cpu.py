"""eval's run.json: written atomically, and a torn one is refused instead of read as ``{}``."""

from __future__ import annotations

import json

import pytest

from masksearch.eval import runner
from masksearch.eval.runner import RUN_FILE, EvalResumeError


def test_torn_run_file_with_records_is_refused(tmp_path):
    (tmp_path / RUN_FILE).write_text('{"fingerprint": {"model": "a", "top')  # what a crash left
    with pytest.raises(EvalResumeError, match="unreadable or torn"):
        runner._check_resume(tmp_path, {"model": "b"}, has_records=True)


def test_killed_while_writing_keeps_the_old_run_file(tmp_path, kill_mid_write):
    runner._check_resume(tmp_path, {"model": "old"}, has_records=False)
    kill_mid_write(
        f"""
        from pathlib import Path
        from masksearch.eval import runner
        runner._check_resume(Path({str(tmp_path)!r}), {{"model": "new" * 1000}}, has_records=False)
        """
    )
    assert json.loads((tmp_path / RUN_FILE).read_text()) == {"fingerprint": {"model": "old"}}
    # and the resume check still compares against it
    with pytest.raises(EvalResumeError, match="other settings"):
        runner._check_resume(tmp_path, {"model": "other"}, has_records=True)


def test_fingerprint_shows_no_url_credentials_and_ignores_trainer_only_keys():
    from masksearch.env.config import SearchEnvConfig
    from masksearch.eval.runner import EvalSettings

    config = SearchEnvConfig(retriever_url="http://me:s3cret@10.0.0.5:8000/?token=abc")
    fingerprint = runner._fingerprint(config, EvalSettings(), {"model": "m"})
    assert fingerprint["env"]["retriever_url"] == "http://10.0.0.5:8000/"
    assert "max_retrieval_error_rate" not in fingerprint["env"]  # runs from before the key still resume
    assert "s3cret" not in json.dumps(fingerprint) and "abc" not in json.dumps(fingerprint)
