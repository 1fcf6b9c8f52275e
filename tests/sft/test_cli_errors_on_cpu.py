"""``masksearch sft`` one-line errors (exit 2, no traceback): a bad --tokenizer, a malformed kept row,
and an evolve teacher server that fails to start."""

from __future__ import annotations

import json
import shlex
import sys

from masksearch.cli.main import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_tokenizer(rows_file, sft_index, tmp_path, capsys):
    rc = main(["sft", "synthesize", "--teacher", "rules", "--data", str(rows_file), "--index", str(sft_index),
               "--out", str(tmp_path / "out"), "--tokenizer", str(tmp_path / "no-tokenizer")])  # fmt: skip
    assert rc == 2
    assert "--tokenizer" in _one_line_error(capsys)


def test_malformed_kept_row_in_convert(tmp_path, capsys):
    kept = tmp_path / "kept.jsonl"
    good = {"id": "a", "status": "kept", "prompt": [{"role": "user", "content": "q"}],
            "segments": [{"role": "assistant", "content": "<answer>x</answer>"}]}  # fmt: skip
    bad = {"id": "b", "status": "kept", "segments": [{"role": "assistant"}]}  # no prompt, no content
    kept.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    out = tmp_path / "sft.parquet"
    assert main(["sft", "convert", str(kept), "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert "kept record #2" in err and "'b'" in err and "malformed" in err
    assert not out.exists()


def test_evolve_teacher_that_fails_to_start(rows_file, sft_index, tiny_model_path, tmp_path, capsys):
    script = (
        "import sys; sys.stderr.write('x' * 100000 + '\\nport already in use: teacher-boom\\n'); sys.exit(4)"
    )
    serve_cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"
    rc = main(["sft", "evolve", "--data", str(rows_file), "--index", str(sft_index), "--out", str(tmp_path / "ev"),
               "--round0-model", str(tiny_model_path), "--rounds", "1", "--student", str(tiny_model_path),
               "--serve-cmd", serve_cmd])  # fmt: skip
    assert rc == 2
    err = _one_line_error(capsys)
    assert "exited with 4" in err and "teacher-boom" in err
