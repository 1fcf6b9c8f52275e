"""RAMP/QA parquet writes: a writer killed mid-write leaves the old file or none; train.parquet last."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq

from masksearch.data.schema import make_row, write_rows

# pyarrow's writer is replaced in the child by one that writes half a file and hangs until killed.
_HALF_THEN_HANG = """
import sys, time
import pyarrow.parquet as pq
def _half_then_hang(table, where, **kw):
    with open(where, "wb") as fh:
        fh.write(b"PAR1" + b"x" * 5000); fh.flush()
    print("HALF", flush=True)
    time.sleep(600)
pq.write_table = _half_then_hang
"""


def _row(question: str) -> dict:
    return make_row(
        data_source="qa",
        prompt=[{"role": "user", "content": question}],
        ability="qa",
        ground_truth=["x"],
        extra_info={"question": question},
        agent_name="masksearch_agent",
    )


def _kill_mid_write(body: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HALF_THEN_HANG + textwrap.dedent(body)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout.readline().strip() == b"HALF", proc.stderr.read().decode()[-2000:]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_killed_write_rows_keeps_the_old_parquet(tmp_path):
    target = write_rows([_row("old question")], tmp_path / "qa.parquet")
    _kill_mid_write(
        f"""
        from masksearch.data.schema import make_row, write_rows
        row = make_row(data_source="qa", prompt=[{{"role": "user", "content": "new"}}], ability="qa",
                       ground_truth=["x"], extra_info={{"question": "new"}}, agent_name="masksearch_agent")
        write_rows([row] * 100, {str(target)!r})
        """
    )
    table = pq.read_table(target)  # whole and readable: the old file
    assert table.num_rows == 1 and table.column("extra_info")[0].as_py()["question"] == "old question"


def test_killed_first_write_leaves_no_file(tmp_path):
    target = tmp_path / "val.parquet"
    _kill_mid_write(
        f"""
        from masksearch.data.schema import write_rows
        write_rows([], {str(target)!r})
        """
    )
    assert not target.exists()


def test_write_ramp_writes_train_last(tmp_path, monkeypatch):
    from masksearch.data import ramp

    order = []
    real = ramp.write_rows
    monkeypatch.setattr(ramp, "write_rows", lambda rows, path: (order.append(path.name), real(rows, path))[1])
    (tmp_path / "train.parquet").write_bytes(b"stale")

    class _Summary:
        def to_dict(self):
            return {"rows": 2}

    build = ramp.RampBuild(train=[_row("t")], val=[_row("v")], summary=_Summary())
    paths = ramp.write_ramp(build, tmp_path)
    assert order == ["val.parquet", "train.parquet"]
    assert pq.read_table(paths["train"]).num_rows == 1 and paths["summary"].is_file()
