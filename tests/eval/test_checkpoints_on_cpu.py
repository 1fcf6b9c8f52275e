"""``--model`` as a verl checkpoint: a real FSDP checkpoint of the tiny model (written by verl's
``FSDPCheckpointManager``) is merged by verl's model merger, cached, and evaluated."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from masksearch.backends.checkpoints import (
    MERGED_DIRNAME,
    CheckpointError,
    find_fsdp_checkpoint,
    is_hf_model_dir,
    resolve_model_path,
)


class TestRealCheckpoint:
    def test_merge_matches_the_original_weights_and_is_cached(
        self, fsdp_checkpoint, tiny_model_path, monkeypatch
    ):
        import torch
        from transformers import AutoModelForCausalLM

        actor = fsdp_checkpoint / "actor"
        assert find_fsdp_checkpoint(fsdp_checkpoint) == actor and find_fsdp_checkpoint(actor) == actor
        merged = resolve_model_path(fsdp_checkpoint)
        assert merged == actor / MERGED_DIRNAME and is_hf_model_dir(merged)
        assert (merged / "tokenizer.json").is_file() or (merged / "tokenizer_config.json").is_file()
        original = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).state_dict()
        restored = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).state_dict()
        assert original.keys() == restored.keys()
        for key, value in original.items():  # the merger saves bf16: equal up to bf16 rounding
            torch.testing.assert_close(restored[key], value.to(torch.bfloat16).float(), rtol=0, atol=0)

        def no_subprocess(*args, **kwargs):
            raise AssertionError("the merged model must be reused, not merged again")

        monkeypatch.setattr(subprocess, "run", no_subprocess)
        assert resolve_model_path(actor) == merged

    def test_eval_cli_accepts_the_checkpoint(self, fsdp_checkpoint, qa_parquet, qa_index, tmp_path):
        from masksearch.cli.main import main

        rc = main(["eval", "--model", str(fsdp_checkpoint), "--data", str(qa_parquet), "--index", str(qa_index),
                   "--out", str(tmp_path), "--max-samples", "2", "--max-response-tokens", "16", "--no-progress",
                   "--device", "cpu"])  # fmt: skip
        assert rc == 0
        res = json.loads((tmp_path / "results.json").read_text())
        assert res["overall"]["n"] == 2 and res["run"]["model_path"].endswith(MERGED_DIRNAME)


class TestDetection:
    def _shards(self, folder: Path, world: int, ranks, hf: bool = True) -> Path:
        folder.mkdir(parents=True)
        for r in ranks:
            (folder / f"model_world_size_{world}_rank_{r}.pt").write_bytes(b"x")
        if hf:
            (folder / "huggingface").mkdir()
            (folder / "huggingface" / "config.json").write_text("{}")
        return folder

    @pytest.mark.parametrize(
        ("world", "ranks", "hf", "error"),
        [
            (2, [0, 1], True, None),  # complete: found
            (2, [0], True, "missing model shards"),  # a rank's shard is missing
            (1, [0], False, "no huggingface/config.json"),  # config/tokenizer folder missing
        ],
    )
    def test_shard_layouts(self, tmp_path, world, ranks, hf, error):
        actor = self._shards(tmp_path / "global_step_3" / "actor", world, ranks, hf)
        if error is None:
            assert find_fsdp_checkpoint(tmp_path / "global_step_3") == actor
        else:
            with pytest.raises(CheckpointError, match=error):
                find_fsdp_checkpoint(actor)

    def test_hf_folder_is_returned_as_is(self, tiny_model_path):
        assert resolve_model_path(tiny_model_path) == Path(tiny_model_path)

    @pytest.mark.parametrize(
        ("layout", "message"),
        [
            ("empty", "neither an HF model folder"),  # a folder with nothing useful
            ("megatron", "Megatron checkpoint"),  # verl's Megatron layout: say how to merge it
            ("missing", "not found"),  # a path that does not exist
        ],
    )
    def test_bad_paths(self, tmp_path, layout, message):
        path = tmp_path / "global_step_1"
        if layout == "empty":
            path.mkdir()
        elif layout == "megatron":
            (path / "actor" / "model" / "dist_ckpt").mkdir(parents=True)
        with pytest.raises((CheckpointError, FileNotFoundError), match=message):
            resolve_model_path(path)

    def test_failed_merge_is_one_line_and_leaves_no_folder(self, tmp_path, monkeypatch):
        from masksearch.backends import checkpoints

        def failing_merger(
            command, **kwargs
        ):  # what verl's merger does on junk shards, without its 10 s import
            assert command[1:4] == ["-m", "verl.model_merger", "merge"]
            Path(command[command.index("--target_dir") + 1], "config.json").write_text("{}")  # half written
            return subprocess.CompletedProcess(
                command, 1, "config: ...\n", "Traceback ...\nUnpicklingError: junk\n"
            )

        monkeypatch.setattr(checkpoints.subprocess, "run", failing_merger)
        merge_fsdp_checkpoint = checkpoints.merge_fsdp_checkpoint
        actor = self._shards(tmp_path / "global_step_1" / "actor", 1, [0])
        with pytest.raises(CheckpointError, match=r"verl model merger failed.*UnpicklingError") as info:
            merge_fsdp_checkpoint(actor, actor / MERGED_DIRNAME)
        assert "\n" not in str(info.value)
        assert not (actor / MERGED_DIRNAME).exists() and not [
            p for p in actor.iterdir() if p.name.startswith(".")
        ]
