"""Self-evolving rounds offline: round 0 = rules-teacher data + the model trained on it; round 1's
teacher is that model run in process (the generation engine), sampling n trajectories per prompt.
``masksearch sft serve`` batches concurrent requests through the same engine."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from masksearch.sft.synthesize import KEPT_FILE, SynthesisConfig, read_records, synthesize


class TestServeBatches:
    def test_concurrent_requests_share_a_batch(self, tiny_model_path):
        from fastapi.testclient import TestClient

        from masksearch.env.generators import HFGenerator
        from masksearch.sft.serve import create_app

        app = create_app(HFGenerator(str(tiny_model_path)), "tiny", max_batch=8)
        answers: list[dict] = []
        with TestClient(app) as client:

            def ask(i: int) -> None:
                body = {"model": "tiny", "prompt": f"<think>{i}", "max_tokens": 4 + i, "stop": ["</search>"]}
                answers.append(client.post("/v1/completions", json=body).json())

            threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            # a different sampling setting is a row like the others (sampling is per row)
            hot = {"model": "tiny", "prompt": "x", "max_tokens": 3, "temperature": 1.0}
            assert client.post("/v1/completions", json=hot).json()["choices"][0]["finish_reason"] in (
                "stop",
                "length",
            )
        assert len(answers) == 6
        assert all(a["choices"][0]["finish_reason"] in ("stop", "length") for a in answers)
        sizes = app.state.engine.admitted  # rows per admission into the running batch
        assert sum(sizes) == 7 and max(sizes) > 1, sizes  # some requests were generated together


@pytest.mark.slow
def test_evolve_offline_round(tmp_path, make_rows, search_client, student_tokenizer, tiny_model_path):
    from masksearch.recipes.sft_ramp.train import TrainResult
    from masksearch.sft.evolve import EVOLVE_REPORT, TRAIN_RESULT, evolve

    rows = make_rows(tmp_path / "rows.parquet")  # 4 QA rows + 1 RAMP row (Eiffel Tower, 2 masks)
    rules = tmp_path / "round0"
    config = SynthesisConfig(mode="rules", max_turns=3, topk=1, concurrency=1)
    round0 = synthesize(rows, rules, search_client=search_client, tokenizer=student_tokenizer, config=config)
    assert round0["kept"] >= 1  # the Eiffel Tower row: both spans are in the corpus
    trained, evaluated = [], []

    def fake_train(parquet, student, out_dir, **kwargs):
        trained.append(len(read_records(rules / KEPT_FILE)))
        return TrainResult(0, Path(out_dir), Path(tiny_model_path), Path(out_dir) / "train.log", [0.5])

    def evaluate(model_dir, round_dir):
        evaluated.append(model_dir)
        return {"recall": 0.25}

    reports = evolve(
        1, rows, tmp_path / "evolve", student_model="base", search_client=search_client,
        tokenizer=student_tokenizer, round0=[rules], round0_model=tiny_model_path,
        config=SynthesisConfig(mode="policy", max_turns=3, concurrency=4, max_response_tokens=48),
        later_rounds={"samples_per_item": 2, "temperature": 1.0}, train_fn=fake_train, evaluate_fn=evaluate,
    )  # fmt: skip
    (report,) = reports
    # the round-0 model is the teacher, 2 samples per prompt, every one judged by the training reward
    assert report["teacher"] == {"mode": "policy", "model": "student-round-0"}
    assert report["items"] == 10 and report["samples_per_item"] == 2
    assert 0.0 <= report["teacher_acc"] <= 1.0 and "endpoint failed" not in report["rejection_reasons"]
    # the round's SFT data = its kept samples merged with round 0's
    assert report["sft_rows"] >= round0["kept"] and trained == [round0["kept"]]
    assert report["student_val"] == {"recall": 0.25} and evaluated == [Path(tiny_model_path)]
    saved = json.loads((tmp_path / "evolve" / "round_1" / TRAIN_RESULT).read_text())
    assert saved["model"] == str(tiny_model_path)
    # resume: the trained round is not trained again
    evolve(
        1, rows, tmp_path / "evolve", student_model="base", search_client=search_client,
        tokenizer=student_tokenizer, round0=[rules], round0_model=tiny_model_path,
        config=SynthesisConfig(mode="policy", max_turns=3, concurrency=4, max_response_tokens=48),
        later_rounds={"samples_per_item": 2}, train_fn=fake_train,
    )  # fmt: skip
    assert len(trained) == 1
    assert json.loads((tmp_path / "evolve" / EVOLVE_REPORT).read_text())[0]["round"] == 1
