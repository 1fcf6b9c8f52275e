"""The stages of ``make learn``, one function each; every one returns a JSON-ready summary.

Each stage writes into its own folder under the work dir and can be re-run: the builders are
atomic, ``run_eval`` and synthesis resume per sample, SFT and RL resume from their checkpoints.
``main`` records a finished stage's summary in ``stages/<name>.json`` and skips it next time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from masksearch.core.errors import UserFacingError
from masksearch.core.jsonl import read_jsonl_parts
from masksearch.core.logs import module_logger
from masksearch.recipes.health import read_events
from masksearch.recipes.learn.settings import LearnSettings

logger = module_logger(__name__)

__all__ = [
    "base_model",
    "stage_data",
    "stage_eval",
    "stage_evolve",
    "stage_rl",
    "stage_sft",
]


def base_model(s: LearnSettings) -> Path:
    """The student: ``MODEL_PATH`` or the embedded SmolLM2-135M-Instruct."""
    if s.model_path:
        path = Path(s.model_path).expanduser()
        if not (path / "config.json").is_file():
            raise UserFacingError(f"MODEL_PATH={s.model_path}: not an HF model folder (no config.json)")
        return path.resolve()
    from masksearch.engine.models import embedded_model_path

    return embedded_model_path()


def paths(s: LearnSettings) -> dict[str, Path]:
    """Where the data stage writes the corpus, its BM25 index and the RAMP parquets under ``WORK_DIR``
    (every stage and the benchmarks read them from here)."""
    r = s.root
    return {
        "corpus": r / "data" / "corpus.jsonl",
        "index": r / "data" / "index_bm25",
        "ramp": r / "data" / "ramp",
        "train": r / "data" / "ramp" / "train.parquet",
        "val": r / "data" / "ramp" / "val.parquet",
    }


def _search_client(s: LearnSettings) -> Any:
    from dataclasses import replace

    from masksearch.env.retrieval import get_search_client

    return get_search_client(replace(s.env_config(), retriever_index=str(paths(s)["index"])))


# ------------------------------------------------------------------------------------ data
def stage_data(s: LearnSettings, *, corpus: Path | None = None, skip_passages: int = 0) -> dict[str, Any]:
    """Corpus (the embedded Wikipedia) + BM25 index + RAMP train / val (split by passage).

    ``corpus``: an existing corpus file to index and mask instead of building one into the work
    dir; ``skip_passages``: RAMP rows only from the passages after the corpus's first ones (the
    warm start, ``recipes/warm_start.py``, keeps clear of the passages the default runs use).
    """
    import itertools

    from masksearch.data.corpus import build_corpus
    from masksearch.data.ramp import RampConfig, build_ramp, read_passages, write_ramp
    from masksearch.data.spans import make_extractor
    from masksearch.search_tool.retrievers import build_index

    p = paths(s)
    if corpus is None:
        corpus = p["corpus"]
        if not corpus.is_file():
            build_corpus(corpus, limit=s.corpus_limit or None, show_progress=False)
    if not (p["index"] / "manifest.json").is_file():
        build_index(corpus, "bm25", p["index"], overwrite=True, show_progress=False)
    if not p["train"].is_file() or not p["val"].is_file():
        config = RampConfig(
            num_samples=s.ramp_samples, max_masks=s.max_masks, seed=0, val_fraction=s.val_fraction
        )
        passages = itertools.islice(read_passages(corpus), skip_passages, None)
        build = build_ramp(passages, make_extractor("rule"), config)
        write_ramp(build, p["ramp"])
    summary = json.loads((p["ramp"] / "summary.json").read_text(encoding="utf-8"))
    return {
        "corpus": str(corpus),
        "index": str(p["index"]),
        "train": str(p["train"]),
        "val": str(p["val"]),
        "mask_num": summary.get("mask_num"),
    }


# ------------------------------------------------------------------------------------ eval
def stage_eval(s: LearnSettings, name: str, model: Path, data: str, max_samples: int) -> dict[str, Any]:
    """Greedy ``masksearch eval`` of ``model`` on ``data`` with the run's env settings."""
    from dataclasses import replace

    from masksearch.engine.engine import default_device
    from masksearch.env.generators import HFGenerator
    from masksearch.eval.datasets import load_eval_dataset
    from masksearch.eval.runner import EvalSettings, run_eval

    out = s.root / "eval" / name
    config = replace(s.env_config(), retriever_index=str(paths(s)["index"]))
    device, dtype = default_device()
    generator = HFGenerator(str(model), temperature=0.0, seed=0, device=device, torch_dtype=dtype)
    settings = EvalSettings(
        batch_size=s.eval_batch,
        max_response_tokens=s.max_response_length,
        max_samples=max_samples,
        show_progress=False,
    )
    run_info = {"model": name, "model_path": str(model), "backend": "hf", "temperature": 0.0, "seed": 0}
    report = run_eval(
        generator, generator.tokenizer, [load_eval_dataset(data)], _search_client(s), config, out,
        settings=settings, run_info=run_info,
    )  # fmt: skip
    overall = report.results["overall"]
    return {
        "name": name,
        "model": str(model),
        "data": data,
        "out": str(out),
        "n": int(overall["n"]),
        "format_ok": overall.get("format_ok"),
        "em": overall.get("em"),
        "f1": overall.get("f1"),
        "recall": overall.get("recall"),
        "mean_searches": overall.get("mean_searches"),
        "failures": int(overall.get("failures", 0)),
        "wall_s": round(report.elapsed_s, 1),
    }


# ------------------------------------------------------------------------------------- SFT
def _train(s: LearnSettings, parquet: Path, out: Path, steps: int, model: Path | None = None) -> Any:
    from masksearch.recipes.sft_ramp.train import train_sft  # moved from sft/train.py (issue 13)

    result = train_sft(
        parquet,
        model or base_model(s),
        out,
        batch_size=s.sft_batch,
        micro_batch_size=s.sft_micro_batch,
        steps=steps,
        max_length=s.max_prompt_length + s.max_response_length,
        overrides=[f"optim.lr={s.sft_lr}"],
    )
    if result.returncode != 0 or result.hf_path is None:
        tail = (
            result.log_file.read_text(encoding="utf-8", errors="replace")[-1500:]
            if result.log_file.is_file()
            else ""
        )
        raise UserFacingError(
            f"SFT failed (rc={result.returncode}); see {result.log_file}: {' '.join(tail.split())[-400:]}"
        )
    return result


def _synthesis_config(s: LearnSettings, mode: str, **settings: Any) -> Any:
    """A teacher's synthesis settings: the RL env's episodes (turns, topk, observation budget), the RL
    response budget, exact match as the keep filter; ``settings`` adds the rest."""
    from masksearch.sft.synthesize import SynthesisConfig

    env = s.env_config()
    return SynthesisConfig(
        mode=mode,
        max_turns=env.max_turns,
        topk=env.topk,
        max_obs_tokens=env.max_obs_tokens,
        max_response_tokens=s.max_response_length,
        answer_check="em",
        **settings,
    )


def stage_sft(s: LearnSettings) -> dict[str, Any]:
    """Rules-teacher trajectories on the training rows → SFT parquet → SFT of the base student."""
    from masksearch.sft.convert import write_sft_parquet
    from masksearch.sft.synthesize import synthesize

    p = paths(s)
    out = s.root / "sft"
    config = _synthesis_config(s, "rules", concurrency=1, limit=s.sft_rows)
    tokenizer = _tokenizer(s)
    synth = synthesize(
        p["train"], out / "rules", search_client=_search_client(s), tokenizer=tokenizer, config=config
    )
    try:
        parquet, rows = write_sft_parquet([out / "rules"], out / "sft.parquet")
    except ValueError:
        raise UserFacingError(
            f"the rules teacher kept no trajectory of {synth['items']} rows ({synth['rejection_reasons']}); "
            "raise MAX_OBS_TOKENS / TOPK / MAX_TURNS or SFT_ROWS"
        ) from None
    result = _train(s, parquet, out / "train", s.sft_steps)
    return {
        "teacher": {
            "items": synth["items"],
            "kept": synth["kept"],
            "kept_share": synth["kept_share"],
            "mean_searches": synth["mean_searches"],
            "rejection_reasons": synth["rejection_reasons"],
            "by_mask_count": synth["by_mask_count"],
        },
        "sft_rows": rows,
        "steps": s.sft_steps,
        "losses": result.losses,
        "tokens_per_s": result.tokens_per_s,
        "model": str(result.hf_path),
    }


def _tokenizer(s: LearnSettings) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_model(s)))


# ---------------------------------------------------------------------------------- evolve
def stage_evolve(s: LearnSettings, sft_model: Path) -> dict[str, Any]:
    """One (or ``EVOLVE_ROUNDS``) self-evolve round(s): the SFT model, run in process, samples
    ``EVOLVE_SAMPLES`` trajectories per training prompt; the training reward keeps
    ``acc = 1``; the base student is trained on those plus round 0's rules data."""
    import pyarrow.parquet as pq

    from masksearch.sft.evolve import evolve

    p = paths(s)
    out = s.root / "evolve"
    out.mkdir(parents=True, exist_ok=True)
    prompts = out / "prompts.parquet"
    if not prompts.is_file():  # training prompts the rules teacher did not see, up to EVOLVE_PROMPTS
        table = pq.read_table(p["train"])
        start = min(s.sft_rows, max(0, table.num_rows - s.evolve_prompts))
        pq.write_table(table.slice(start, s.evolve_prompts), prompts)
    config = _synthesis_config(
        s,
        "policy",
        concurrency=max(1, min(16, s.evolve_prompts * s.evolve_samples)),
        samples_per_item=s.evolve_samples,
        temperature=s.evolve_temperature,
    )
    # On CPU a round continues from the SFT model on the merged data (EVOLVE_STEPS, far fewer
    # than a second SFT from scratch); EVOLVE_FROM=base trains the base student again instead.
    student = sft_model if s.evolve_from == "sft" else base_model(s)
    reports = evolve(
        s.evolve_rounds,
        prompts,
        out,
        student_model=student,
        search_client=_search_client(s),
        tokenizer=_tokenizer(s),
        round0=[s.root / "sft" / "rules"],
        round0_model=sft_model,
        config=config,
        later_rounds={"samples_per_item": s.evolve_samples, "temperature": s.evolve_temperature},
        train_fn=lambda parquet, student, train_dir, **kw: _train(
            s, Path(parquet), Path(train_dir), s.evolve_steps, model=Path(student)
        ),
        evaluate_fn=lambda model, round_dir: _student_val(s, model, round_dir),
    )
    last = reports[-1]
    if "stopped" in last or not last.get("model"):
        raise UserFacingError(f"self-evolve stopped: {last.get('stopped', 'no model')}; see {out}")
    return {"rounds": reports, "model": last["model"]}


def _student_val(s: LearnSettings, model: Path, round_dir: Path) -> dict[str, Any]:
    """A round's student on the val set; the last round's run is the ``eval_evolve`` stage's (resumed)."""
    round_no = int(round_dir.name.rpartition("_")[2] or 0)
    name = "evolve" if round_no == s.evolve_rounds else f"evolve-round{round_no}"
    result = stage_eval(s, name, model, str(paths(s)["val"]), s.val_samples)
    return {k: result[k] for k in ("n", "format_ok", "em", "f1", "recall", "mean_searches")}


# -------------------------------------------------------------------------------------- RL
def _rl_overrides(s: LearnSettings, model: Path, out: Path) -> list[str]:
    from dataclasses import replace

    from masksearch.curriculum.sampler import CurriculumSettings
    from masksearch.recipes.dynamic_sampling import DynamicSamplingSettings
    from masksearch.recipes.settings import MaskSearchSettings

    p = paths(s)
    masksearch = MaskSearchSettings(  # the env every stage ran, as the recipe's typed settings
        env=replace(s.env_config(), retriever_index=str(p["index"])),
        curriculum=CurriculumSettings(strategy=s.curriculum),
        dynamic_sampling=DynamicSamplingSettings(max_gen_batches=s.rl_gen_batches),
    )
    return [
        f"data.train_files={p['train']}",
        f"data.val_files={p['val']}",
        f"data.train_batch_size={s.rl_batch}",
        f"data.max_prompt_length={s.max_prompt_length}",
        f"data.max_response_length={s.max_response_length}",
        f"actor_rollout_ref.model.path={model}",
        f"actor_rollout_ref.rollout.n={s.group_size}",
        f"actor_rollout_ref.rollout.temperature={s.rl_temperature}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={s.rl_batch}",
        f"actor_rollout_ref.actor.optim.lr={s.rl_lr}",
        *masksearch.overrides("env", "curriculum", "dynamic_sampling"),
        f"reward.custom_reward_function.reward_kwargs.format_weight={s.format_weight}",
        f"reward.reward_kwargs.overlong_buffer_cfg.len={max(16, s.max_response_length // 8)}",
        f"trainer.total_training_steps={s.rl_steps}",
        f"trainer.save_freq={s.rl_steps}",
        "trainer.test_freq=-1",  # the eval stage after RL is the validation
        "trainer.val_before_train=false",
        f"trainer.default_local_dir={out / 'checkpoints'}",
        "trainer.logger=[console,file,tensorboard]",
        "trainer.experiment_name=learn",
    ]


def read_rl_curve(metrics_file: Path) -> dict[str, list[float]]:
    """The RL curves of the report from verl's file logger (one JSON line per step).

    Also ``reward/acc/mask_{k}`` for every mask count k logged at some step (NaN at the others).
    """
    from masksearch.curriculum.metrics import ACC_BY_MASK_PREFIX

    keys = ("reward/acc/mean", "reward/format_ok/mean", "env/searches_per_sample")
    curve: dict[str, list[float]] = {"step": [], **{k: [] for k in keys}}
    by_step: dict[int, dict[str, Any]] = {}
    for row in read_jsonl_parts(metrics_file):  # with the parts a resumed run set aside
        data = row.get("data")
        if isinstance(data, dict) and any(k in data for k in keys):
            by_step[int(row.get("step", len(by_step) + 1))] = data  # a resumed step: the last wins
    masks: set[int] = set()
    for data in by_step.values():
        for key in data:
            tail = key[len(ACC_BY_MASK_PREFIX) :] if key.startswith(ACC_BY_MASK_PREFIX) else ""
            if tail.isdigit():
                masks.add(int(tail))
    keys += tuple(f"{ACC_BY_MASK_PREFIX}{m}" for m in sorted(masks))
    curve.update({k: [] for k in keys if k not in curve})
    for step in sorted(by_step):
        curve["step"].append(step)
        for k in keys:
            curve[k].append(float(by_step[step].get(k, float("nan"))))
    return curve


def read_update_speed(metrics_file: Path) -> list[float]:
    """Tokens/s of the RL actor update at each step (``1000 / timing_per_token_ms/update_actor``)."""
    key = "timing_per_token_ms/update_actor"
    per_token_ms = [row.get("data", {}).get(key) for row in read_jsonl_parts(metrics_file)]
    return [1000.0 / float(ms) for ms in per_token_ms if isinstance(ms, int | float) and ms > 0]


def stage_rl(s: LearnSettings, start_model: Path) -> dict[str, Any]:
    """DAPO on RAMP from the SFT checkpoint (``python -m masksearch.recipes.dapo_ramp``), then the
    final actor as an HF folder. How the run ended comes from the ``run_result.json`` it writes."""
    from masksearch.backends.checkpoints import resolve_model_path
    from masksearch.recipes.dapo_ramp.main import RESULT_FILE, RunResult

    out = s.root / "rl"
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    log_file = out / "rl.log"
    env = {
        **os.environ,
        "TENSORBOARD_DIR": str(out / "tensorboard"),
        "VERL_FILE_LOGGER_PATH": str(metrics),
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "MASKSEARCH_BUDGET_CHECK": os.environ.get("MASKSEARCH_BUDGET_CHECK", "strict"),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "masksearch.recipes.dapo_ramp", *_rl_overrides(s, start_model, out)]
    started = time.perf_counter()
    with log_file.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(command)}\n")
        fh.flush()
        proc = subprocess.run(command, cwd=out, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
    result = RunResult.read(out / "checkpoints")
    status = result.get("status", f"no {RESULT_FILE}")
    if proc.returncode != 0 or status != "ok":
        detail = result.get("error") or "no error recorded (killed?)"
        raise UserFacingError(f"RL failed (rc={proc.returncode}, {status}): {detail} (log: {log_file})")
    step_dir = out / "checkpoints" / f"global_step_{s.rl_steps}"
    if not step_dir.is_dir():
        raise UserFacingError(f"RL ended without {step_dir}; see {log_file}")
    final = resolve_model_path(step_dir)
    budget = (result.get("budget") or {}).get("line")
    return {
        "start_model": str(start_model),
        "steps": s.rl_steps,
        "checkpoint": str(step_dir),
        "model": str(final),
        "budget": budget,
        "rl_curve": read_rl_curve(metrics),
        "update_tokens_per_s": read_update_speed(metrics),
        # the watchdog's events (recipes/health.py): None = it was off, [] = no rule tripped
        "health_events": read_events(out / "checkpoints"),
        "wall_s": round(time.perf_counter() - started, 1),
    }
