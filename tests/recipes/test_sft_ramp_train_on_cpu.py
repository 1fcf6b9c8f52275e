"""recipes.sft_ramp.train: a resumed SFT run keeps the steps verl's file logger wrote before the kill."""

from __future__ import annotations

import json
import subprocess

from masksearch.recipes.sft_ramp import train
from masksearch.recipes.sft_ramp.checkpoint import TRACKER_FILE


def test_a_resumed_run_keeps_the_earlier_losses_and_a_fresh_one_starts_over(tmp_path, monkeypatch):
    out = tmp_path / "out"
    attempts = iter([[1, 2], [3, 4], [1]])

    def fake_verl(command, *, env, **kwargs):
        """What verl's SFT trainer does to the metrics file: open it with "wb" and log its steps."""
        with open(env["VERL_FILE_LOGGER_PATH"], "wb") as fh:
            for step in next(attempts):
                fh.write(json.dumps({"step": step, "data": {"train/loss": float(step)}}).encode() + b"\n")
        return subprocess.CompletedProcess(command, 1)  # no checkpoint to convert

    monkeypatch.setattr(train, "_rows", lambda data: 8)
    monkeypatch.setattr(train.subprocess, "run", fake_verl)
    run = lambda: train.train_sft("rows.parquet", "model", out, batch_size=2, steps=4, cpu=True)  # noqa: E731
    assert run().losses == [1.0, 2.0]  # killed after step 2, having saved a checkpoint
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / TRACKER_FILE).write_text("2")
    assert run().losses == [1.0, 2.0, 3.0, 4.0]  # resumed: verl logs steps 3-4 into a new file
    assert (out / "metrics.jsonl.part1").is_file()
    (out / "checkpoints" / TRACKER_FILE).unlink()  # checkpoints deleted: a run from scratch
    assert run().losses == [1.0]  # not the earlier run's kept steps before its own
    assert not (out / "metrics.jsonl.part1").exists()
