"""The training-health watchdog in real tiny-model runs of the DAPO + RAMP recipe on CPU.

Three runs, shared by the tests of this module:

* ``collapse``: the actor lr is injected at 1.0 (x10^6 the recipe's 1e-6, reached after a 2-step
  warmup), the entropy rules roll back (window 2, patience 1, lr x0.01, one rollback). The run is
  killed right after the step that rolled back;
* ``resumed``: the same command again: it resumes from the rollback step (reloading the restored
  weights) and, with ``length_at_budget`` switched to ``stop`` at a threshold every step exceeds,
  stops at its first step with exit != 0 and the event's line;
* ``normal``: the recipe's own lr with the same sensitive entropy settings (warn): no event.

On CPU the policy's entropy is read from ``actor/rollout_corr/training_log_ppl`` (verl's bypass
mode computes no ``actor/entropy``); the scripted policy writes the text, so a destroyed model
shows as a jump of that surprisal.
"""

from __future__ import annotations

import json

import pytest

from masksearch.recipes.health import EVENTS_FILE, read_events

pytestmark = pytest.mark.slow

LR = 1.0
FACTOR = 0.01
H = "masksearch.health"
SENSITIVE = [  # entropy rules that react at once (the defaults wait 5 + 3 steps)
    f"{H}.entropy_explosion.window=2",
    f"{H}.entropy_explosion.patience=1",
    f"{H}.entropy_collapse.window=2",
    f"{H}.entropy_collapse.patience=1",
]
ROLLBACK = [
    f"{H}.entropy_explosion.action=rollback",
    f"{H}.entropy_collapse.action=rollback",
    f"{H}.lr_factor={FACTOR}",
    f"{H}.max_rollbacks=1",
]
ENTROPY = "actor/rollout_corr/training_log_ppl"


def _overrides(root, tiny_search_overrides, steps: int) -> list[str]:
    return [
        *tiny_search_overrides(root, max_response_length=256),
        f"masksearch.env.retriever_index={root / 'index'}",
        "masksearch.env.max_obs_tokens=128",  # a few documents: rollouts of a prompt answer differently
        "reward.reward_kwargs.overlong_buffer_cfg.len=128",  # so their rewards (lengths) differ: gradients
        "masksearch.curriculum.strategy=none",
        "masksearch.dynamic_sampling.max_gen_batches=1",
        f"trainer.total_training_steps={steps}",
        "trainer.save_freq=1",
        "trainer.test_freq=-1",
        *SENSITIVE,
    ]


def _rolled_back(steps: list[dict]) -> bool:
    return any(row["data"].get("health/rollbacks", 0) >= 1 for row in steps)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, build_search_workspace):
    return build_search_workspace(tmp_path_factory.mktemp("health"), articles=200, samples=24)


@pytest.fixture(scope="module")
def collapse_runs(workspace, tiny_search_overrides, run_verl):
    overrides = [
        *_overrides(workspace, tiny_search_overrides, steps=10),
        f"actor_rollout_ref.actor.optim.lr={LR}",
        "actor_rollout_ref.actor.optim.lr_warmup_steps=2",
        *ROLLBACK,
    ]
    entry, env = "masksearch.recipes.dapo_ramp", {"MASKSEARCH_BUDGET_CHECK": "warn"}
    log = workspace / "collapse.log"  # where run_verl sends the run's console

    def rollback_logged(steps: list[dict]) -> bool:
        # the trainer runs in a Ray actor: its console reaches the driver's log through Ray's log
        # monitor, after the metrics row it wrote itself; kill only once both are there
        return (
            _rolled_back(steps)
            and log.is_file()
            and "health: rollback at step" in log.read_text("utf-8", "replace")
        )

    collapse = run_verl(
        workspace, overrides, name="collapse", entry=entry, env=env, kill_when=rollback_logged
    )
    assert _rolled_back(collapse.steps), collapse.log[-6000:]
    stop = [  # every step has responses at the length budget: the first resumed step stops
        f"{H}.length_at_budget.action=stop",
        f"{H}.length_at_budget.threshold=0.01",
        f"{H}.length_at_budget.patience=1",
    ]
    resumed = run_verl(workspace, [*overrides, *stop], name="resumed", entry=entry, env=env)
    print(f"\nhealth e2e wall: collapse {collapse.wall_s:.0f}s, resumed {resumed.wall_s:.0f}s")
    return collapse, resumed


@pytest.fixture(scope="module")
def normal_run(tmp_path_factory, workspace, tiny_search_overrides, run_verl):
    root = tmp_path_factory.mktemp("health-normal")
    for name in ("ramp", "index"):
        (root / name).symlink_to(workspace / name)
    run = run_verl(
        root,
        _overrides(root, tiny_search_overrides, steps=5),
        name="normal",
        entry="masksearch.recipes.dapo_ramp",
        env={"MASKSEARCH_BUDGET_CHECK": "warn"},
    )
    assert run.returncode == 0, run.log[-6000:]
    return run


def _events(run) -> list[dict]:
    return read_events(run.checkpoint_dir) or []


def test_injected_collapse_trips_the_entropy_rule_within_its_patience(collapse_runs):
    collapse, _ = collapse_runs
    event = _events(collapse)[0]
    assert event["rule"] in ("entropy_explosion", "entropy_collapse") and event["outcome"] == "rollback"
    assert event["metric"] == ENTROPY and event["bad_steps"] == 1
    rows = {row["step"]: row["data"] for row in collapse.steps}
    trip = event["step"]
    ratio = 2.0 if event["rule"] == "entropy_explosion" else 0.5
    value, baseline = rows[trip][ENTROPY], rows[trip - 1][f"health/{event['rule']}/baseline"]
    assert value == pytest.approx(event["value"]) and baseline == pytest.approx(event["baseline"])
    assert (value > ratio * baseline) if ratio > 1 else (value < ratio * baseline)
    # no earlier step was bad: the rule tripped at its first bad step (patience 1)
    for step in range(2, trip):
        base = rows[step - 1].get(f"health/{event['rule']}/baseline")
        if base is not None and ENTROPY in rows[step]:
            assert rows[step][ENTROPY] <= 2.0 * base and rows[step][ENTROPY] >= 0.5 * base, step
    print("\nevent:", json.dumps(event))
    print(
        "curve:",
        [(s, round(d.get(ENTROPY, float("nan")), 2), d.get("actor/lr")) for s, d in sorted(rows.items())],
    )


def test_rollback_restores_the_healthy_weights_and_lowers_the_lr(collapse_runs):
    collapse, resumed = collapse_runs
    event = _events(collapse)[0]
    detail = event["detail"]
    # the actor's log-probs of the sequences kept with the healthy checkpoint equal those saved then
    probe = detail["probe"]
    assert probe["sequences"] >= 2 and probe["ok"], detail
    assert probe["max_abs_logprob_diff"] <= 1e-3 < probe["max_abs_logprob_diff_before"], detail
    assert detail["restored_step"] < event["step"] and detail["lr"] == pytest.approx(LR * FACTOR)
    # the steps after the rollback train with the lower lr
    after = {row["step"]: row["data"] for row in resumed.steps}
    assert after[event["step"] + 1]["actor/lr"] == pytest.approx(LR * FACTOR)
    assert after[event["step"] + 1]["health/lr_scale"] == pytest.approx(FACTOR)
    assert f"health: rollback at step {event['step']}: {event['rule']}" in collapse.log


def test_resume_after_a_rollback_continues_from_the_next_step_with_the_restored_weights(collapse_runs):
    collapse, resumed = collapse_runs
    trip = _events(collapse)[0]["step"]
    assert collapse.step_numbers()[-1] == trip  # killed right after the rollback step was logged
    assert resumed.step_numbers() == [trip + 1], resumed.log[-4000:]
    assert f"step {trip} ended with a rollback; reloading" in resumed.log
    assert resumed.steps[0]["data"]["health/rollbacks"] == 1


def test_stop_exits_nonzero_with_the_one_line_after_saving(collapse_runs):
    _, resumed = collapse_runs
    step = resumed.step_numbers()[0]
    assert resumed.returncode != 0
    line = (
        f"masksearch: health: stop at step {step}: length_at_budget (responses pinned at the length budget): "
    )
    assert line in resumed.log, resumed.log[-4000:]
    # the run's last words are the line (the recipe's entry catches the stop; no Ray traceback), exit 3
    tail = resumed.log.rstrip().splitlines()[-5:]  # (Ray may still say goodbye after it)
    assert any(t.startswith(line) for t in tail), tail
    assert resumed.returncode == 3
    assert (resumed.checkpoint_dir / f"global_step_{step}" / "actor").is_dir()
    assert _events(resumed)[-1]["outcome"] == "stop"
    from masksearch.recipes.dapo_ramp.main import RunResult  # what `make learn` reads instead of the log

    result = RunResult.read(resumed.checkpoint_dir)
    assert result["status"] == "health_stop" and result["error"].startswith(line), result
    assert result["last_checkpoint_step"] == step


def test_a_normal_run_trips_nothing(normal_run):
    assert (normal_run.checkpoint_dir / EVENTS_FILE).read_text() == ""
    assert "masksearch: health:" not in normal_run.log
    for row in normal_run.steps:
        data = row["data"]
        assert data["health/events"] == 0 and data["health/rollbacks"] == 0
        assert "health/entropy_explosion/bad_steps" in data
    assert "health/entropy_explosion/baseline" in normal_run.steps[-1]["data"]  # armed by the end
