"""SFT merge output is trusted only when every shard the index names is there and whole."""

from __future__ import annotations

import json
import struct

import pytest

from masksearch.recipes.sft_ramp import checkpoint


def _safetensors(path, n_bytes: int = 16, truncate: int = 0) -> None:
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [n_bytes // 4], "data_offsets": [0, n_bytes]}}
    ).encode()
    data = struct.pack("<Q", len(header)) + header + b"\0" * n_bytes
    path.write_bytes(data[: len(data) - truncate])


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "huggingface_merged"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    _safetensors(folder / "model-00001-of-00002.safetensors")
    _safetensors(folder / "model-00002-of-00002.safetensors")
    return folder


class TestHasWeights:
    def test_complete_sharded_model(self, model_dir):
        assert checkpoint._has_weights(model_dir)

    def test_missing_shard(self, model_dir):
        (model_dir / "model-00002-of-00002.safetensors").unlink()  # "any safetensors exists" said yes
        assert not checkpoint._has_weights(model_dir)

    def test_truncated_shard(self, model_dir):
        _safetensors(model_dir / "model-00002-of-00002.safetensors", truncate=5)
        assert not checkpoint._has_weights(model_dir)

    def test_truncated_single_file(self, tmp_path):
        (tmp_path / "config.json").write_text("{}")
        _safetensors(tmp_path / "model.safetensors", truncate=1)
        assert not checkpoint._has_weights(tmp_path)
        _safetensors(tmp_path / "model.safetensors")
        assert checkpoint._has_weights(tmp_path)


def test_failed_merge_leaves_no_target_and_keeps_a_torn_one_out(tmp_path):
    step = tmp_path / "global_step_1"
    step.mkdir()
    target = step / "huggingface_merged"
    target.mkdir()
    (target / "config.json").write_text("{}")
    _safetensors(target / "model.safetensors", truncate=3)  # a torn earlier merge: not reused
    with pytest.raises(RuntimeError, match="model_merger failed"):
        checkpoint.sft_checkpoint_to_hf(step)
    assert sorted(p.name for p in step.iterdir()) == ["huggingface_merged"]  # no temp folder left
    assert not checkpoint._has_weights(target)
