"""The evolve teacher server's stderr goes to a log file whose tail is shown when it fails to start.

Before, stderr was a pipe nobody read: a server that wrote more than 64 KB blocked on it and the
start-up wait ran out with no reason given.
"""

from __future__ import annotations

import shlex
import sys
import time

import pytest

from masksearch.sft.evolve import ServedModel


def test_chatty_server_that_dies_shows_its_log_tail(tmp_path):
    script = "import sys; sys.stderr.write('noise ' * 40000 + '\\nCUDA out of memory: boom\\n'); sys.exit(3)"
    served = ServedModel(
        tmp_path, "student", serve_cmd=f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}", startup_s=20,
        log_path=tmp_path / "teacher.log",
    )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(RuntimeError) as info, served:
        pass
    message = str(info.value)
    assert "exited with 3" in message and "CUDA out of memory: boom" in message
    assert str(tmp_path / "teacher.log") in message and "\n" not in message
    assert time.monotonic() - started < 15
    assert (tmp_path / "teacher.log").stat().st_size > 64 * 1024
