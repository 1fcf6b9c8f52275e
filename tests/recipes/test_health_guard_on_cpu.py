"""The watchdog inside the trainer (``masksearch.recipes.health_guard``) against a fake verl trainer.

The fake saves checkpoints the way verl's FSDP engine lays them out and rotates them away as
``max_actor_ckpt_to_keep=1`` does; it records what the guard asks of verl (checkpoint loads,
weight syncs, saves, logged metrics). Real runs: ``test_health_e2e_on_cpu.py``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from masksearch.recipes.health import EVENTS_FILE, RULES, read_events
from masksearch.recipes.health_guard import STATE_FILE, HealthGuard, HealthStop

LR = 1e-3


class _WorkerGroup:
    def __init__(self, calls: list):
        self.calls = calls
        self._dispatch_info = {"actor": [0]}

    def load_checkpoint(self, local_path, del_local_after_load=False):
        self.calls.append(("load_checkpoint", local_path, del_local_after_load))


class _CheckpointManager:
    def __init__(self, calls: list):
        self.calls = calls

    def sleep_replicas(self):
        self.calls.append(("sleep_replicas",))

    def update_weights(self, step):
        self.calls.append(("update_weights", step))


class _Tracking:
    def __init__(self):
        self.logged: list[tuple[int, dict]] = []

    def log(self, data, step):
        self.logged.append((step, dict(data)))


class FakeTrainer:
    """What the guard uses of verl's PPOTrainer."""

    def __init__(self, run_dir: Path, health: dict, total_steps: int = 20):
        self.config = OmegaConf.create(
            {
                "trainer": {"default_local_dir": str(run_dir), "save_freq": 1},
                "actor_rollout_ref": {"rollout": {"temperature": 1.0}, "actor": {"checkpoint": {}}},
                "masksearch": {"health": health},
            }
        )
        self.run_dir = run_dir
        self.total_training_steps = total_steps
        self.global_steps = 0
        self.calls: list = []
        self.actor_rollout_wg = _WorkerGroup(self.calls)
        self.checkpoint_manager = _CheckpointManager(self.calls)
        self.logger = _Tracking()
        self.use_critic = False

    def _save_checkpoint(self):
        """verl's layout of one rank's actor checkpoint, then its rotation (keep 1)."""
        step = self.global_steps
        actor = self.run_dir / f"global_step_{step}" / "actor"
        actor.mkdir(parents=True, exist_ok=True)
        torch.save({"w": torch.full((2,), float(step))}, actor / "model_world_size_1_rank_0.pt")
        torch.save(
            {"state": {}, "param_groups": [{"lr": LR, "initial_lr": LR, "params": [0]}]},
            actor / "optim_world_size_1_rank_0.pt",
        )
        torch.save(
            {"lr_scheduler": {"base_lrs": [LR], "_last_lr": [LR]}, "rng": None},
            actor / "extra_state_world_size_1_rank_0.pt",
        )
        self.calls.append(("save", step))
        previous = self.run_dir / f"global_step_{step - 1}" / "actor"
        if previous.is_dir():
            shutil.rmtree(previous)

    def step(self, metrics: dict, *, save: bool = True) -> dict:
        """One training step as ``fit`` runs it: save, then ``_compute_metrics`` (the guard)."""
        self.global_steps += 1
        if save:
            self._save_checkpoint()
        metrics = dict(metrics)
        HealthGuard.of(self).after_step(_Batch(), metrics, self.global_steps)
        return metrics


class _Batch:
    def __init__(self):
        self.keys = ["k0", "k1"]
        self.tags = [{}, {}]
        self.partition_id = "train"


def _health(**rules) -> dict:
    values = {spec.name: {"action": "off"} for spec in RULES}
    values.update(rules)
    return {**values, "probe_size": 0}  # the restore check needs TransferQueue: e2e only


GOOD = {"actor/rollout_corr/training_log_ppl": 10.0, "actor/grad_norm": 1.0, "actor/pg_loss": 0.1}


def test_disabled_guard_is_none_and_a_bad_key_fails_at_once(tmp_path):
    assert HealthGuard.of(FakeTrainer(tmp_path, {"enable": False})) is None
    with pytest.raises(ValueError, match=r"Unknown masksearch\.health key"):
        HealthGuard.of(FakeTrainer(tmp_path, {"entropy": {"action": "stop"}}))


def test_a_rollback_rule_needs_saved_checkpoints(tmp_path):
    trainer = FakeTrainer(tmp_path, _health(format_drop={"action": "rollback"}))
    trainer.config.trainer.save_freq = -1
    with pytest.raises(ValueError, match=r"trainer\.save_freq > 0"):
        HealthGuard.of(trainer)


def test_every_step_logs_health_metrics_and_an_empty_events_file_means_none(tmp_path):
    trainer = FakeTrainer(tmp_path, {})
    HealthGuard.of(trainer).after_load()
    metrics = trainer.step(GOOD)
    assert metrics["health/events"] == 0 and metrics["health/lr_scale"] == 1.0
    assert {f"health/{spec.name}/bad_steps" for spec in RULES} <= set(metrics)
    assert read_events(tmp_path) == []
    state = json.loads((tmp_path / "global_step_1" / STATE_FILE).read_text())
    assert state["step"] == 1 and state["live_from"] is None


def test_warn_logs_one_line_and_goes_on(tmp_path, caplog):
    trainer = FakeTrainer(tmp_path, _health(grad_norm_spike={"window": 2, "patience": 1}))
    for _ in range(2):
        trainer.step(GOOD)
    with caplog.at_level(logging.WARNING, logger="masksearch.recipes.health_guard"):
        metrics = trainer.step({**GOOD, "actor/grad_norm": 40.0})
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("masksearch: health: warn at step 3: grad_norm_spike (grad norm spiked): ")
    assert "actor/grad_norm=40 vs baseline 1 (threshold 10, 1 bad steps)" in line
    assert metrics["health/events"] == 1
    assert [e["outcome"] for e in read_events(tmp_path)] == ["warn"]
    trainer.step(GOOD)  # and the run goes on


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("-inf"), torch.tensor(float("nan"))],
    ids=["nan-loss", "minus-inf-loss", "torch-nan-loss"],
)
def test_nonfinite_stops_after_saving_and_logging_the_step(tmp_path, bad, capsys):
    trainer = FakeTrainer(tmp_path, {})  # defaults: nonfinite -> stop
    trainer.step(GOOD, save=False)
    with pytest.raises(HealthStop) as info:
        trainer.step({**GOOD, "actor/pg_loss": bad}, save=False)
    line = str(info.value)
    assert line.startswith("masksearch: health: stop at step 2: nonfinite (non-finite value): actor/pg_loss=")
    assert "\n" not in line and line in capsys.readouterr().err
    assert ("save", 2) in trainer.calls  # saved before stopping (verl had not saved this step)
    (step, logged), *_ = trainer.logger.logged
    assert step == 2 and logged["health/events"] == 1  # the step's metrics reach the curves
    assert (tmp_path / "global_step_2" / STATE_FILE).is_file()
    assert [e["outcome"] for e in read_events(tmp_path)] == ["stop"]


def _rollback_run(tmp_path, **extra) -> FakeTrainer:
    rule = {"action": "rollback", "window": 2, "patience": 1}
    trainer = FakeTrainer(tmp_path, {**_health(entropy_explosion=rule), "lr_factor": 0.25, **extra})
    HealthGuard.of(trainer).after_load()
    for _ in range(3):  # steps 1-3 clean: step 2 is the last healthy checkpoint (confirmed by step 3)
        trainer.step(GOOD)
    return trainer


def test_rollback_reloads_the_last_healthy_checkpoint_with_a_lower_lr(tmp_path):
    trainer = _rollback_run(tmp_path)
    assert not (tmp_path / "global_step_2" / "actor").exists()  # verl rotated it away...
    metrics = trainer.step({**GOOD, "actor/rollout_corr/training_log_ppl": 60.0})
    folder = tmp_path / "health" / "rollback" / "global_step_2"  # ...the watchdog kept it
    assert trainer.calls[-3:] == [
        ("sleep_replicas",),
        ("load_checkpoint", str(folder / "actor"), False),
        ("update_weights", 4),
    ]
    assert torch.load(folder / "actor" / "model_world_size_1_rank_0.pt")["w"].tolist() == [2.0, 2.0]
    optim = torch.load(folder / "actor" / "optim_world_size_1_rank_0.pt")
    assert optim["param_groups"][0]["lr"] == pytest.approx(LR * 0.25)
    assert metrics["health/rollbacks"] == 1 and metrics["health/lr_scale"] == 0.25
    (event,) = read_events(tmp_path)
    assert (event["rule"], event["outcome"], event["detail"]["restored_step"]) == (
        "entropy_explosion",
        "rollback",
        2,
    )
    assert (
        "reloaded the healthy checkpoint of step 2, actor lr x0.25 (now 0.00025)"
        in event["detail"]["summary"]
    )
    state = json.loads((tmp_path / "global_step_4" / STATE_FILE).read_text())
    assert state["live_from"] == str(folder) and state["watchdog"]["rollbacks"] == 1
    # the next step goes on from the restored weights: clean again, nothing more happens
    assert trainer.step(GOOD)["health/events"] == 0


def test_resume_from_the_rollback_step_reloads_the_restored_weights(tmp_path):
    trainer = _rollback_run(tmp_path)
    trainer.step({**GOOD, "actor/rollout_corr/training_log_ppl": 60.0})
    resumed = FakeTrainer(tmp_path, trainer.config.masksearch.health)
    resumed.global_steps = 4  # verl's _load_checkpoint of global_step_4 (the bad weights), then:
    HealthGuard.of(resumed).after_load()
    folder = tmp_path / "health" / "rollback" / "global_step_2"
    assert resumed.calls == [
        ("sleep_replicas",),
        ("load_checkpoint", str(folder / "actor"), False),
        ("update_weights", 4),
    ]
    guard = HealthGuard.of(resumed)
    assert (guard.watchdog.rollbacks, guard.watchdog.lr_scale, guard.keeper.healthy) == (1, 0.25, 2)
    assert resumed.step(GOOD)["health/lr_scale"] == 0.25  # step 5: the scale carries on


@pytest.mark.parametrize(
    ("extra", "steps_before", "why"),
    [
        ({"max_rollbacks": 0}, 3, "rollback limit reached (0 of 0 done)"),
        ({}, 0, "no checkpoint judged healthy yet to roll back to"),
    ],
)
def test_rollback_that_cannot_be_done_stops(tmp_path, extra, steps_before, why):
    rule = {"action": "rollback", "window": 1, "patience": 1}
    trainer = FakeTrainer(tmp_path, {**_health(length_at_budget=rule), **extra})
    for _ in range(steps_before):
        trainer.step(GOOD)
    with pytest.raises(HealthStop, match=re.escape(why)):
        trainer.step({**GOOD, "response_length/clip_ratio": 0.9})
    assert [e["outcome"] for e in read_events(tmp_path)] == ["stop"]
    assert (tmp_path / EVENTS_FILE).is_file()
    if steps_before:  # verl saved the step: its state is there for a resume
        state = json.loads((tmp_path / f"global_step_{steps_before + 1}" / STATE_FILE).read_text())
        assert state["watchdog"]["events_total"] == 1


def test_a_run_from_scratch_in_an_old_folder_forgets_the_old_events_and_kept_checkpoints(tmp_path):
    _rollback_run(tmp_path).step({**GOOD, "actor/rollout_corr/training_log_ppl": 60.0})
    assert read_events(tmp_path) and (tmp_path / "health" / "healthy").is_dir()
    fresh = FakeTrainer(tmp_path, _health(entropy_explosion={"action": "rollback"}))
    HealthGuard.of(fresh).after_load()  # global_steps 0: trainer.resume_mode=disable, or nothing to resume
    assert read_events(tmp_path) == [] and HealthGuard.of(fresh).keeper.healthy is None
    assert not (tmp_path / "health" / "healthy").exists()
