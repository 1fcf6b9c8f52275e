"""The SFT recipe's config (deltas over verl's sft_trainer_engine), CPU overrides, pin and checkpoint helper."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from masksearch.recipes.sft_ramp import latest_checkpoint, sft_checkpoint_to_hf, sft_cpu_overrides
from masksearch.recipes.sft_ramp.main import CONFIG_DIR, CONFIG_NAME, process_group_backend

RECIPE = Path(CONFIG_DIR).parent


def _compose(overrides=()):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(CONFIG_NAME, overrides=list(overrides))


class TestConfig:
    def test_is_deltas_over_verl(self):
        raw = yaml.safe_load((RECIPE / "config" / f"{CONFIG_NAME}.yaml").read_text())
        assert raw["hydra"]["searchpath"] == ["pkg://verl.trainer.config"]
        assert raw["defaults"] == ["sft_trainer_engine", "_self_"]
        assert set(raw) == {"hydra", "defaults", "data", "trainer", "checkpoint"}

    def test_composes_with_our_dataset_and_hf_checkpoints(self):
        cfg = _compose()
        assert cfg.data.custom_cls.path == "pkg://masksearch.recipes.sft_ramp.dataset"
        assert cfg.data.custom_cls.name == "TrajectorySFTDataset"
        assert "hf_model" in cfg.checkpoint.save_contents
        assert "wandb" not in cfg.trainer.logger
        assert cfg.optim.lr > 0 and cfg.engine is not None  # verl's own groups are still there

    def test_cpu_overrides_apply(self):
        cfg = _compose(sft_cpu_overrides())
        assert cfg.engine.strategy == "fsdp2" and cfg.trainer.device == "cpu"
        assert cfg.engine.mixed_precision.param_dtype == "fp32"
        assert cfg.model.override_config.attn_implementation == "sdpa"
        assert cfg.model.enable_gradient_checkpointing is False  # verl's default is True
        # one sequence per micro batch: verl's default packs the batch into one row (CPU sdpa: quadratic)
        assert cfg.data.use_dynamic_bsz is False and _compose().data.use_dynamic_bsz is True

    def test_pin(self):
        import verl

        assert (RECIPE / "REQUIRED_VERL.txt").read_text().strip() == f"verl=={verl.__version__}"

    @pytest.mark.parametrize(
        ("device", "ccl", "backend"),
        [
            ("cpu", "gloo", "gloo"),
            ("cuda", "nccl", "cpu:gloo,cuda:nccl"),
            ("npu", "hccl", "cpu:gloo,npu:hccl"),
        ],
    )
    def test_process_group_backend(self, device, ccl, backend):
        assert process_group_backend(device, ccl) == backend


class TestCheckpoint:
    def _fake_run(self, root: Path, steps=(1, 2), latest=2, weights=True):
        for step in steps:
            hf = root / f"global_step_{step}" / "huggingface"
            hf.mkdir(parents=True)
            (hf / "config.json").write_text("{}")
            if weights:
                # the smallest whole safetensors file (8-byte header length, empty header): an
                # empty file is a torn write, which the checkpoint lookup refuses
                (hf / "model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
        (root / "latest_checkpointed_iteration.txt").write_text(str(latest))
        return root

    @pytest.mark.parametrize(
        ("target", "expected"),
        [
            ("", "global_step_2"),  # the run folder: its latest step
            ("global_step_1", "global_step_1"),  # a step folder
            ("global_step_1/huggingface", "global_step_1"),  # its huggingface folder
        ],
    )
    def test_latest_checkpoint(self, tmp_path, target, expected):
        root = self._fake_run(tmp_path / "run")
        assert latest_checkpoint(root / target).name == expected

    def test_hf_folder_is_returned(self, tmp_path):
        root = self._fake_run(tmp_path / "run")
        assert sft_checkpoint_to_hf(root) == (root / "global_step_2" / "huggingface").resolve()

    def test_no_checkpoint(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="no global_step"):
            sft_checkpoint_to_hf(tmp_path)
