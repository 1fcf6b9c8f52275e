"""The DAPO + RAMP recipe end to end on CPU, through its own entry (``python -m masksearch.recipes.dapo_ramp``).

Checks from the run's logged metrics: the DAPO pieces are on and visible, dynamic sampling filters
groups and survives when no group can pass, the curriculum and environment metrics are logged, and a
killed run resumes when the same command is run again.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from masksearch.recipes.dapo_ramp.main import recipe_overrides, resolve_profile


class TestEntryOverrides:
    def test_cpu_profile_on_this_machine(self):
        assert resolve_profile([]) == "cpu"
        assert resolve_profile(["masksearch.profile=gpu"]) == "gpu"

    def test_user_overrides_come_last_and_win(self):
        overrides = recipe_overrides(["masksearch.profile=cpu", "actor_rollout_ref.rollout.name=vllm"])
        assert overrides.index("actor_rollout_ref.rollout.name=hf") < overrides.index(
            "actor_rollout_ref.rollout.name=vllm"
        )
        assert any(o.startswith("reward.custom_reward_function.path=") for o in overrides)
        assert any(o.startswith("actor_rollout_ref.rollout.agent.agent_loop_config_path=") for o in overrides)

    def test_logging_env_reaches_workers_of_a_shell_started_cluster(self, monkeypatch):
        from hydra import compose, initialize_config_dir

        from masksearch.recipes.dapo_ramp.main import CONFIG_DIR

        monkeypatch.setenv("TENSORBOARD_DIR", "/runs/tb")
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.delenv("VERL_FILE_LOGGER_PATH", raising=False)
        overrides = [o for o in recipe_overrides(["masksearch.profile=cpu"]) if ".runtime_env.env_vars." in o]
        assert not any("VERL_FILE_LOGGER_PATH" in o for o in overrides)
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            env_vars = compose("dapo_ramp", overrides=overrides).ray_kwargs.ray_init.runtime_env.env_vars
        # Ray accepts only string values: Hydra must not turn "1" into an int
        assert env_vars.TENSORBOARD_DIR == "/runs/tb" and env_vars.HF_HUB_OFFLINE == "1"

    def test_keeps_the_latest_checkpoint_and_puts_hydra_beside_it(self):
        from hydra import compose, initialize_config_dir

        from masksearch.recipes.dapo_ramp.main import CONFIG_DIR

        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            config = compose(
                "dapo_ramp", overrides=["trainer.default_local_dir=/runs/x"], return_hydra_config=True
            )
        assert config.trainer.max_actor_ckpt_to_keep == 1  # verl rotates older global_step_*/actor away
        assert str(config.hydra.run.dir).startswith("/runs/x/hydra/")

    def test_bad_profile_is_one_line_error(self):
        proc = subprocess.run(
            [sys.executable, "-m", "masksearch.recipes.dapo_ramp", "masksearch.profile=tpu"],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 2 and "choose one of auto, cpu, gpu" in proc.stderr


class TestRunResult:
    """Every exit of the entry leaves ``<trainer.default_local_dir>/run_result.json`` (what ``make learn`` reads)."""

    @staticmethod
    def _entry(*overrides: str) -> subprocess.CompletedProcess:
        import os

        env = {k: v for k, v in os.environ.items() if not k.startswith("MASKSEARCH_")}
        return subprocess.run(
            [sys.executable, "-m", "masksearch.recipes.dapo_ramp", "masksearch.profile=cpu", *overrides],
            capture_output=True, text=True, check=False, timeout=300, env=env,
        )  # fmt: skip

    def test_a_settings_typo_stops_before_ray_and_is_recorded(self, tmp_path):
        from masksearch.recipes.dapo_ramp.main import RunResult

        proc = self._entry(f"trainer.default_local_dir={tmp_path}", "++masksearch.env.topkk=3")
        lines = [line for line in proc.stderr.splitlines() if line.startswith("masksearch:")]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert len(lines) == 1 and lines[0].startswith(
            "masksearch: error: Unknown masksearch.env key(s) ['topkk']"
        )
        result = RunResult.read(tmp_path)
        assert result["status"] == "error" and result["error"].startswith("Unknown masksearch.env key(s)")
        assert result["budget"]["line"].startswith("budget: 1 mask(s)") and result["budget"]["fits"] is True
        assert result["last_checkpoint_step"] is None and result["last_checkpoint"] is None

    def test_an_error_before_hydra_is_recorded_when_the_folder_is_given(self, tmp_path):
        from masksearch.recipes.dapo_ramp.main import RunResult

        proc = self._entry(f"trainer.default_local_dir={tmp_path}", "masksearch.env.search_api_key=x")
        assert proc.returncode == 2 and "secrets are never passed as overrides" in proc.stderr
        assert RunResult.read(tmp_path)["status"] == "error" and RunResult.read(tmp_path)["budget"] is None

    def test_last_checkpoint_is_verls_tracker(self, tmp_path):
        from masksearch.recipes.dapo_ramp.main import RunResult

        (tmp_path / "latest_checkpointed_iteration.txt").write_text("7")
        RunResult(tmp_path).write("health_stop", "masksearch: health: stop at step 8: ...")
        result = RunResult.read(tmp_path)
        assert (result["status"], result["last_checkpoint_step"]) == ("health_stop", 7)
        assert result["last_checkpoint"] == str(tmp_path / "global_step_7")
        RunResult(None).write("error", "nowhere to write")  # no folder known: nothing written, no error


@pytest.fixture(scope="module")
def recipe_runs(tmp_path_factory, build_search_workspace, tiny_search_overrides, run_verl):
    root = build_search_workspace(tmp_path_factory.mktemp("dapo_ramp"), articles=200, samples=16)
    overrides = [
        *tiny_search_overrides(root, max_response_length=128),
        f"masksearch.env.retriever_index={root / 'index'}",
        "masksearch.env.max_obs_tokens=64",
        "reward.reward_kwargs.overlong_buffer_cfg.len=32",
        "masksearch.dynamic_sampling.max_gen_batches=2",
        "trainer.total_training_steps=2",
        "trainer.save_freq=1",
        "trainer.test_freq=10",  # validates at the last step only
    ]
    entry = "masksearch.recipes.dapo_ramp"
    killed = run_verl(root, overrides, name="killed", entry=entry, kill_when=lambda steps: len(steps) >= 1)
    assert killed.step_numbers() == [1], killed.log[-6000:]
    assert (killed.checkpoint_dir / "global_step_1").is_dir()
    # the rerun logs into the killed run's metrics file, as a resumed `make learn` RL stage does
    rerun = run_verl(
        root, overrides, name="rerun", entry=entry, env={"VERL_FILE_LOGGER_PATH": str(killed.metrics_file)}
    )
    assert rerun.returncode == 0, rerun.log[-8000:]
    print(f"\nrecipe e2e wall: killed run {killed.wall_s:.0f}s, rerun {rerun.wall_s:.0f}s")
    return killed, rerun


def test_the_finished_run_leaves_its_result(recipe_runs):
    from masksearch.recipes.dapo_ramp.main import RunResult

    _, rerun = recipe_runs
    result = RunResult.read(rerun.checkpoint_dir)
    assert (result["status"], result["error"], result["last_checkpoint_step"]) == ("ok", None, 2)
    assert result["last_checkpoint"] == str(rerun.checkpoint_dir / "global_step_2")
    assert result["budget"]["line"].startswith("budget: ") and result["budget"]["line"] in rerun.log


def test_rerun_of_the_same_command_resumes(recipe_runs):
    _, rerun = recipe_runs
    assert rerun.step_numbers() == [2]
    assert (rerun.checkpoint_dir / "global_step_2" / "actor").is_dir()


def test_the_resumed_run_keeps_the_killed_runs_metrics(recipe_runs):
    """verl's file logger opens its file with "wb"; the trainer sets the earlier file aside first."""
    from masksearch.core.jsonl import read_jsonl_parts

    killed, rerun = recipe_runs
    assert rerun.metrics_file == killed.metrics_file
    kept = killed.metrics_file.with_name(killed.metrics_file.name + ".part1")
    assert kept.is_file() and "metrics of the earlier attempt kept in" in rerun.log
    assert [int(r["step"]) for r in read_jsonl_parts(killed.metrics_file)] == [1, 2]


def test_disk_holds_the_latest_checkpoint_and_no_stray_hydra_folder(recipe_runs):
    """Issue 21: a 3-step demo left 4.8 GB (a checkpoint with optimizer state per step) and ./outputs/<date>/."""
    _, rerun = recipe_runs
    workdir = rerun.checkpoint_dir.parent
    assert not (workdir / "outputs").exists()  # Hydra's run folder goes under the checkpoints
    assert list((rerun.checkpoint_dir / "hydra").glob("*/.hydra/overrides.yaml"))
    # both runs saved each of their steps; a process keeps only its latest actor checkpoint
    # (max_actor_ckpt_to_keep=1), so the killed run's step 1 stays (another process saved it)
    assert (rerun.checkpoint_dir / "global_step_1" / "actor").is_dir()


def test_dapo_pieces_are_on_and_logged(recipe_runs):
    killed, rerun = recipe_runs
    steps = [row["data"] for row in killed.steps + rerun.steps]
    for data in steps:
        # clip-higher fractions, overlong shaping (dapo reward manager, log=True), the sampling budget
        for key in (
            "actor/pg_clipfrac",
            "actor/pg_clipfrac_lower",
            "reward/overlong/mean",
            "reward/overlong_reward/mean",
            "training/dynamic_sampling/exhausted",
        ):
            assert key in data, key
    # groups whose rollouts all got the same acc (the scripted policy rarely fills a mask right) are dropped
    assert sum(d.get("training/filter_groups/evicted_samples", 0) for d in steps) >= 1
    # and when no group can pass within the budget, the step still completes, counted
    assert any(d["training/dynamic_sampling/exhausted"] == 1.0 for d in steps)
    print(
        "\nDAPO metrics per step:",
        [{k: v for k, v in d.items() if "filter" in k or "dynamic" in k} for d in steps],
    )


def test_validation_logs_the_eval_metrics(recipe_runs):
    _, rerun = recipe_runs
    data = rerun.steps[-1]["data"]
    assert 0.0 <= data["val-core/ramp/acc/mean@1"] <= 1.0
    for metric in ("em", "f1", "recall"):  # the same scoring as `masksearch eval`
        assert 0.0 <= data[f"val-aux/ramp/{metric}/mean@1"] <= 1.0, metric


def test_curriculum_and_env_metrics_present(recipe_runs):
    killed, rerun = recipe_runs
    for row in killed.steps + rerun.steps:
        assert row["data"]["env/searches_per_sample"] > 0
        assert "curriculum/mask_num_mean" in row["data"]
        assert "reward/acc/mean" in row["data"]


class TestRayOutOfMemoryIsOneLine:
    """Ray's OOM report is a page whose last line is a documentation link; the run result says what to do."""

    REPORT = (
        "Task was killed due to the node running low on memory.\n"
        "Memory on the node (IP: 192.0.2.2, ID: 27d0) was 22.16GB used / 23.54GB limit (0.941447)\n"
        "Object store memory usage: [...]\n"
        "Refer to the documentation on how to address the out of memory issue: https://docs.ray.io/x"
    )

    def test_the_line_names_the_usage_and_the_knobs(self):
        from masksearch.recipes.dapo_ramp.main import _one_line

        class OutOfMemoryError(Exception):  # the name Ray's class has; the recipe does not import ray here
            pass

        line = _one_line(OutOfMemoryError(self.REPORT))
        assert "\n" not in line and "docs.ray.io" not in line
        assert "(22.16GB used / 23.54GB limit)" in line and "actor_rollout_ref.rollout.n" in line

    def test_a_wrapped_oom_is_found_through_its_cause(self):
        from masksearch.recipes.dapo_ramp.main import _one_line

        class OutOfMemoryError(Exception):
            pass

        class RayTaskError(Exception):
            def __init__(self, cause):
                super().__init__("traceback text\nmore")
                self.cause = cause

        assert _one_line(RayTaskError(OutOfMemoryError(self.REPORT))).startswith(
            "Ray's memory monitor killed"
        )
        assert _one_line(RayTaskError(ValueError("first\nlast line"))) == "last line"
