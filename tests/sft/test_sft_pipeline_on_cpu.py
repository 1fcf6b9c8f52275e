"""End to end on CPU: synthesise (scripted teacher on 127.0.0.1) -> SFT parquet -> verl's SFT trainer
(2 steps, tiny model) -> HF checkpoint for the RL recipe; and a 2-round self-evolving loop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from masksearch.core.grammar import strip_information
from masksearch.sft.convert import write_sft_parquet
from masksearch.sft.endpoint import RetryPolicy
from masksearch.sft.synthesize import SynthesisConfig, synthesize

pytestmark = pytest.mark.slow
CONFIG = SynthesisConfig(max_turns=3, concurrency=2, retry=RetryPolicy(max_attempts=2, backoff_initial_s=0.0))


def _recipe_data_config(parquet: Path, max_length: int = 1024):
    """``data`` of the recipe config exactly as Hydra composes it for a run."""
    from hydra import compose, initialize_config_dir

    from masksearch.recipes.sft_ramp.main import CONFIG_DIR, CONFIG_NAME

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(CONFIG_NAME, overrides=[f"data.train_files={parquet}", f"data.max_length={max_length}"])
    return cfg.data


def test_sft_through_verl(
    tmp_path, rows_file, agent_server, search_client, student_tokenizer, tiny_model_path
):
    from transformers import AutoModelForCausalLM
    from verl.trainer.sft_trainer import create_sft_dataset
    from verl.utils.dataset.dataset_utils import SFTTensorCollator

    from masksearch.recipes.sft_ramp import sft_checkpoint_to_hf
    from masksearch.recipes.sft_ramp.train import train_sft

    report = synthesize(
        rows_file, tmp_path / "synth", endpoint_url=agent_server.url, model="teacher",
        search_client=search_client, tokenizer=student_tokenizer, config=CONFIG, sleep=lambda s: None,
    )  # fmt: skip
    (tmp_path / "synthesis_report.json").write_text(json.dumps(report, indent=2))
    parquet, n = write_sft_parquet([tmp_path / "synth"], tmp_path / "sft.parquet")
    assert n == report["kept"] == 2

    # The batch verl's trainer gets: the recipe's data.custom_cls through verl's own factory + collator.
    data_cfg = _recipe_data_config(parquet)
    dataset = create_sft_dataset(str(parquet), data_cfg, student_tokenizer, None)
    batch = SFTTensorCollator(data_cfg.pad_mode)([dataset[i] for i in range(len(dataset))])
    info_open = student_tokenizer.encode("<information>", add_special_tokens=False)
    info_close = student_tokenizer.encode("</information>", add_special_tokens=False)
    for ids, mask in zip(batch["input_ids"].unbind(), batch["loss_mask"].unbind(), strict=True):
        ids, mask = ids.tolist(), mask.tolist()
        text_trained = student_tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
        assert "<information>" not in text_trained and "Doc 1(Title:" not in text_trained
        assert text_trained.startswith("<think>") and text_trained.endswith(
            "</answer>" + student_tokenizer.eos_token
        )
        # every token from <information> to </information> (inclusive) has loss 0
        starts = [i for i in range(len(ids)) if ids[i : i + len(info_open)] == info_open]
        ends = [i + len(info_close) for i in range(len(ids)) if ids[i : i + len(info_close)] == info_close]
        assert starts and len(starts) == len(ends)
        for s, e in zip(starts, ends, strict=True):
            assert set(mask[s:e]) == {0}
        # the model's own <search>/<answer> tags are trained, every one of them
        full = strip_information(student_tokenizer.decode(ids[mask.index(1) :]))  # the response
        for tag in ("<think>", "<search>", "</search>", "<answer>", "</answer>"):
            assert text_trained.count(tag) == full.count(tag) > 0

    result = train_sft(
        parquet, tiny_model_path, tmp_path / "train", batch_size=2, steps=2, max_length=1024, cpu=True
    )
    assert result.returncode == 0, result.log_file.read_text()[-3000:]
    assert len(result.losses) == 2 and all(math.isfinite(x) and x > 0 for x in result.losses)
    # step speed (verl logs none for SFT): the RL trainer's perf/throughput, one per step
    assert len(result.tokens_per_s) == 2 and all(x > 0 for x in result.tokens_per_s)
    (tmp_path / "losses.json").write_text(json.dumps(result.losses))
    hf = sft_checkpoint_to_hf(result.checkpoint_dir)
    assert hf == result.hf_path == result.checkpoint_dir / "global_step_2" / "huggingface"
    model = AutoModelForCausalLM.from_pretrained(str(hf))  # what actor_rollout_ref.model.path loads
    assert (
        model.config.hidden_size
        == AutoModelForCausalLM.from_pretrained(str(tiny_model_path)).config.hidden_size
    )


def test_evolve_two_rounds(
    tmp_path, rows_file, agent_server, search_client, student_tokenizer, tiny_model_path
):
    """The loop's orchestration with real servers: round 1 against the scripted multi-agent teacher,
    round 2 against the "trained" model run in process (the tiny model behind the generation
    engine). Training itself is stubbed here (it returns the tiny model); verl's SFT run is
    covered by ``test_sft_through_verl``, and doing it twice more would double this file's time."""
    from masksearch.recipes.sft_ramp.train import TrainResult
    from masksearch.sft.evolve import EVOLVE_REPORT, evolve

    trained = []

    def fake_train(parquet, student, out_dir, **kwargs):
        trained.append((Path(parquet), student, kwargs))
        return TrainResult(0, Path(out_dir), Path(tiny_model_path), Path(out_dir) / "train.log", [1.0])

    later = {"max_response_tokens": 48, "temperature": 0.0}  # the served random model writes noise
    reports = evolve(
        2, rows_file, tmp_path / "evolve", teacher_url=agent_server.url, teacher_model="teacher",
        student_model="base-student", search_client=search_client, tokenizer=student_tokenizer,
        config=CONFIG, later_rounds=later, train_kwargs={"steps": 1}, train_fn=fake_train,
    )  # fmt: skip
    assert [r["round"] for r in reports] == [1, 2] and "stopped" not in reports[-1]
    first, second = reports
    assert first["teacher"] == {"mode": "agents", "model": "teacher"} and first["kept_share"] == 0.4
    # round 2's teacher is round 1's model, run in process; the random
    # tiny model keeps nothing, but every item went through it and was judged (no endpoint failure)
    assert second["teacher"] == {"mode": "policy", "model": "student-round-1"} and second["items"] == 5
    assert (
        sum(second["rejection_reasons"].values()) == 5
        and "endpoint failed" not in second["rejection_reasons"]
    )
    # each round trains the base student on all kept trajectories so far
    assert [(p.name, s, k) for p, s, k in trained] == [("sft.parquet", "base-student", {"steps": 1})] * 2
    assert json.loads((tmp_path / "evolve" / EVOLVE_REPORT).read_text())[1]["round"] == 2


def test_serve_speaks_openai(tiny_model_path):
    """The built-in server answers both endpoints the way OpenAIGenerator expects (in-process app)."""
    from fastapi.testclient import TestClient

    from masksearch.env.generators import HFGenerator, OpenAIGenerator
    from masksearch.sft.serve import create_app

    app = create_app(HFGenerator(str(tiny_model_path)), "tiny")
    with TestClient(app) as client:
        body = {"model": "tiny", "prompt": "<think>", "max_tokens": 5, "stop": ["</search>"]}
        choice = client.post("/v1/completions", json=body).json()["choices"][0]
        assert choice["finish_reason"] in ("stop", "length") and isinstance(choice["text"], str)
        chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        assert (
            client.post("/v1/chat/completions", json=chat).json()["choices"][0]["message"]["role"]
            == "assistant"
        )
        assert client.post("/v1/chat/completions", json={"messages": []}).status_code == 400
        generated = OpenAIGenerator("http://testserver", "tiny", http_client=client).generate(
            "Hello", 4, ["</answer>"]
        )
        assert generated.finish_reason in ("length", "eos", "stop")
