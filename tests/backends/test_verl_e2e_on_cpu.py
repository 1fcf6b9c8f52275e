"""Foundation end-to-end: verl's own ``main_ppo`` runs GRPO on CPU through our plugin.

Asserts from verl's logged metrics (its ``file`` logger and tensorboard), not from our code:
steps complete, gradients flow, rollout and trainer agree on log-probs, checkpoints resume, and the
``masksearch`` trainer mode adds the reward's extra keys to the training curves.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


def _write_dataset(path: Path, rows: int) -> Path:
    records = [
        {
            "data_source": "toy",
            "prompt": [{"role": "user", "content": f"Tell me one fact about the number {i}."}],
            "ability": "toy",
            "reward_model": {"style": "rule", "ground_truth": str(i)},
            "extra_info": {"index": i, "split": path.stem},
        }
        for i in range(rows)
    ]
    pd.DataFrame(records).to_parquet(path)
    return path


def _grpo_overrides(tiny_model_path: Path, data_dir: Path, total_steps: int, trainer_overrides) -> list[str]:
    return [
        "algorithm.adv_estimator=grpo",
        f"data.train_files={_write_dataset(data_dir / 'train.parquet', 16)}",
        f"data.val_files={_write_dataset(data_dir / 'val.parquet', 4)}",
        "data.train_batch_size=4",
        "data.max_prompt_length=64",
        "data.max_response_length=16",
        f"actor_rollout_ref.model.path={tiny_model_path}",
        "actor_rollout_ref.rollout.n=2",
        "actor_rollout_ref.actor.ppo_mini_batch_size=4",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.actor.use_kl_loss=false",
        "algorithm.use_kl_in_reward=false",
        "actor_rollout_ref.actor.optim.lr=1e-3",
        *trainer_overrides(HERE / "toy_reward.py", total_steps),
    ]


@pytest.fixture(scope="module")
def grpo_runs(tmp_path_factory, tiny_model_path, run_verl, trainer_overrides):
    """Two steps, then the same command with three steps: the second run must resume at step 3."""
    workdir = tmp_path_factory.mktemp("grpo_e2e")
    first = run_verl(
        workdir,
        _grpo_overrides(tiny_model_path, workdir, 2, trainer_overrides),
        name="first",
        entry="masksearch.recipes.main_ppo",
    )
    assert first.returncode == 0, first.log[-6000:]
    second = run_verl(workdir, _grpo_overrides(tiny_model_path, workdir, 3, trainer_overrides), name="second")
    assert second.returncode == 0, second.log[-6000:]
    print(
        f"\ne2e wall time: first run (2 steps) {first.wall_s:.1f}s, resumed run (1 step) {second.wall_s:.1f}s"
    )
    return first, second


def test_two_grpo_steps_complete_with_finite_nonzero_gradients(grpo_runs):
    first, _ = grpo_runs
    assert first.step_numbers() == [1, 2]
    grad_norms = first.metric("actor/grad_norm")
    assert len(grad_norms) == 2
    assert all(math.isfinite(g) and g > 0 for g in grad_norms), grad_norms


def test_rollout_and_trainer_log_probs_agree(grpo_runs):
    first, _ = grpo_runs
    # the CPU profile runs verl's bypass mode: old log-probs are the rollout's (no recompute pass), and
    # the update's own forward pass is compared with them: mean |log-ppl(rollout) - log-ppl(trainer)|
    # per sequence, and the PPO-KL of the first (only) mini-batch, where pi_theta is still pi_old
    log_ppl_gap = first.metric("actor/rollout_corr/log_ppl_abs_diff")
    ppo_kl = first.metric("actor/ppo_kl")
    print(f"\nrollout vs trainer: log_ppl_abs_diff={log_ppl_gap} ppo_kl={ppo_kl}")
    assert len(log_ppl_gap) == 2 and max(log_ppl_gap) <= 1e-3
    assert len(ppo_kl) == 2 and max(abs(k) for k in ppo_kl) <= 1e-3
    # bypass: the old-log-prob pass is skipped (verl still times the copy of rollout_log_probs)
    assert max(first.metric("timing_s/old_log_prob")) < 1.0


def test_reward_extra_keys_reach_training_metrics(grpo_runs):
    first, _ = grpo_runs
    acc = first.metric("reward/acc/mean")
    assert len(acc) == 2 and all(0.0 <= a <= 1.0 for a in acc)
    # the mean score the trainer mode logs matches verl's own critic/score/mean
    for ours, verls in zip(first.metric("reward/score/mean"), first.metric("critic/score/mean"), strict=True):
        assert ours == pytest.approx(verls, abs=1e-6)


def test_checkpoint_written_and_restart_resumes_at_step_three(grpo_runs):
    first, second = grpo_runs
    assert (first.checkpoint_dir / "global_step_2" / "actor").is_dir()
    assert (first.checkpoint_dir / "global_step_2" / "data.pt").is_file()
    assert second.step_numbers() == [3], "the rerun must continue from global_step_2, not start over"
    assert (second.checkpoint_dir / "global_step_3" / "actor").is_dir()
    assert (second.checkpoint_dir / "latest_checkpointed_iteration.txt").read_text().strip() == "3"


def test_tensorboard_has_step_scalars(grpo_runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first, _ = grpo_runs
    event_files = sorted(first.tensorboard_dir.rglob("events.out.tfevents.*"))
    assert event_files, f"no tensorboard events under {first.tensorboard_dir}"
    steps_by_tag: dict[str, set[int]] = {}
    for event_file in event_files:
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            steps_by_tag.setdefault(tag, set()).update(e.step for e in accumulator.Scalars(tag))
    for tag in ("actor/grad_norm", "critic/score/mean", "reward/acc/mean"):
        assert {1, 2} <= steps_by_tag.get(tag, set()), (tag, steps_by_tag.get(tag))
