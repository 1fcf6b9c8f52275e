"""The masksearch trainer mode's metric aggregation (the part verl does not do for training)."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from masksearch.recipes import trainer
from masksearch.recipes.trainer import reward_extra_metrics


class _Wrapped:
    """TransferQueue hands back non-tensor fields wrapped in an object with ``.data``."""

    def __init__(self, data):
        self.data = data


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([], {}),  # empty batch
        (
            [{"reward_extra_info": {"acc": 1.0}}, {"reward_extra_info": {"acc": 0.0}}],
            {"reward/acc/mean": 0.5},
        ),
        (
            [{"reward_extra_info": {"pred": "x", "acc": True}}],
            {"reward/acc/mean": 1.0},
        ),  # strings skipped, bool
        (
            [{"reward_extra_info": {"n": np.int64(3)}}, {"reward_extra_info": {}}],
            {"reward/n/mean": 3.0},
        ),  # per-key
        ([{"reward_extra_info": {"x": float("nan")}}], {}),  # non-finite dropped
        ([_Wrapped({"reward_extra_info": {"acc": 0.25}})], {"reward/acc/mean": 0.25}),  # TQ wrapper
        ([{"no_reward": 1}, None, "junk"], {}),  # malformed rows ignored
        (  # verl's dapo manager: 0-d torch tensors; multi-element values skipped
            [
                {
                    "reward_extra_info": {
                        "overlong": torch.tensor(True),
                        "overlong_reward": torch.tensor(-0.5),
                    }
                },
                {"reward_extra_info": {"overlong": False, "overlong_reward": 0, "v": torch.ones(3)}},
            ],
            {"reward/overlong/mean": 0.5, "reward/overlong_reward/mean": -0.25},
        ),
    ],
)
def test_reward_extra_metrics(fields, expected):
    assert reward_extra_metrics(fields) == pytest.approx(expected)


def test_doctests():
    assert doctest.testmod(trainer).failed == 0


class TestRetrievalErrorGuard:
    def test_stops_after_k_consecutive_bad_steps_naming_the_retriever(self):
        guard = trainer.RetrievalErrorGuard(0.5, 3, "server http://10.0.0.5:8000")
        for rate in (0.9, 1.0):
            guard.update({"env/retrieval_error_rate": rate})
        with pytest.raises(
            trainer.RetrievalErrorAbort, match=r"3 consecutive steps .*http://10\.0\.0\.5:8000"
        ):
            guard.update({"env/retrieval_error_rate": 0.75})

    def test_good_step_or_no_env_samples(self):
        guard = trainer.RetrievalErrorGuard(0.5, 2, "index /i")
        guard.update({"env/retrieval_error_rate": 0.9})
        guard.update({})  # a step without env samples neither counts nor resets
        assert guard.bad_steps == 1
        guard.update({"env/retrieval_error_rate": 0.5})  # at the threshold is not above it
        assert guard.bad_steps == 0

    def test_steps_without_retriever_requests_neither_count_nor_reset(self):
        # a dead server, then steps where the policy did not search or only hit the client's cache:
        # those steps carry rate 0 but no evidence, so the run must still stop on the next bad step
        guard = trainer.RetrievalErrorGuard(0.5, 2, "server http://127.0.0.1:1")
        guard.update({"env/retrieval_error_rate": 1.0, "env/retriever_requests": 3})
        guard.update({"env/retrieval_error_rate": 0.0, "env/retriever_requests": 0})
        assert guard.bad_steps == 1
        with pytest.raises(trainer.RetrievalErrorAbort, match="2 consecutive steps"):
            guard.update({"env/retrieval_error_rate": 1.0, "env/retriever_requests": 1})

    def test_rate_one_disables(self):
        guard = trainer.RetrievalErrorGuard(1.0, 1, "index /i")
        for _ in range(5):
            guard.update({"env/retrieval_error_rate": 1.0})

    def test_from_config_defaults_on_and_reads_the_keys(self):
        from omegaconf import OmegaConf

        default = trainer.RetrievalErrorGuard.from_config(
            OmegaConf.create({"masksearch": {"env": {"retriever_url": "http://u:secret@h:1/?k=v"}}})
        )
        assert (default.max_rate, default.max_steps) == (0.5, 3)
        assert default.retriever == "server http://h:1/" and "secret" not in default.retriever
        env = {"retriever_index": "/idx", "max_retrieval_error_rate": 0.2, "max_retrieval_error_steps": 5}
        custom = trainer.RetrievalErrorGuard.from_config(OmegaConf.create({"masksearch": {"env": env}}))
        assert (custom.max_rate, custom.max_steps, custom.retriever) == (0.2, 5, "index /idx")


class TestReplayBufferPoll:
    """verl's sync buffer sleeps ``poll_interval`` (2 s) between looks for finished groups; we shorten it."""

    @staticmethod
    def _built(monkeypatch, masksearch: dict):
        from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

        from masksearch.recipes.trainer import MaskSearchTrainer

        class Buffer:
            poll_interval = 2.0
            filter_groups_metric = None

        monkeypatch.setattr(PPOTrainerSync, "_build_replay_buffer", lambda self: Buffer())
        trainer = object.__new__(MaskSearchTrainer)
        trainer.config = OmegaConf.create({"masksearch": masksearch})
        return trainer._build_replay_buffer()

    def test_verl_buffer_polls_on_its_poll_interval_attribute(self):
        import inspect

        from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

        assert inspect.signature(ReplayBuffer.__init__).parameters["poll_interval"].default == 2.0
        assert "time.sleep(self.poll_interval)" in inspect.getsource(ReplayBuffer._wait_for_next_poll)

    def test_default_and_configured_interval(self, monkeypatch):
        assert self._built(monkeypatch, {}).poll_interval == 0.25
        assert self._built(monkeypatch, {"sampler": {"poll_interval_s": 0.5}}).poll_interval == 0.5

    def test_non_positive_interval_is_a_config_error(self, monkeypatch):
        with pytest.raises(ValueError, match="poll_interval_s must be > 0"):
            self._built(monkeypatch, {"sampler": {"poll_interval_s": 0}})


class TestAccByMaskCountMetrics:
    """``_compute_metrics`` logs ``reward/acc/mask_{k}`` from the rollouts' ``extra_info`` and reward ``acc``."""

    class _Batch:
        def __init__(self, n: int, padding=()):
            self.keys = [f"uid{i}_0_0" for i in range(n)]
            self.tags = [{"is_padding": i in padding} for i in range(n)]
            self.partition_id = "train"

    @staticmethod
    def _trainer(monkeypatch, store: dict):
        """A trainer whose TransferQueue is ``store`` (field -> key -> value) and whose parent metrics are none."""
        from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

        from masksearch.recipes.trainer import MaskSearchTrainer

        def kv_batch_get(keys, partition_id, select_fields):
            (name,) = select_fields
            if name not in store:
                raise ValueError(f"field {name} not in TransferQueue")
            return {name: [_Wrapped(store[name][k]) for k in keys]}

        monkeypatch.setattr(trainer.tq, "kv_batch_get", kv_batch_get)
        monkeypatch.setattr(PPOTrainerSync, "_compute_metrics", lambda self, *a, **kw: None)
        t = object.__new__(MaskSearchTrainer)
        t.config = OmegaConf.create({"masksearch": {"env": {"max_retrieval_error_rate": 1.0}}})
        t._drawn_mask_nums = []
        return t

    def test_logged_per_mask_count_skipping_padding_and_odd_rows(self, monkeypatch):
        batch = self._Batch(6, padding={5})
        infos = [
            {"mask_num": 1},
            {"mask_num": 1},
            {"mask_num": 3},
            {"index": 7},
            {"mask_num": 3},
            {"mask_num": 1},
        ]
        accs = [1.0, 0.0, 1.0, 1.0, None, 1.0]  # row 3: no mask count; row 4: no acc; row 5: padding
        store = {
            "extra_info": dict(zip(batch.keys, infos, strict=True)),
            "extra_fields": {
                k: {"reward_extra_info": {} if a is None else {"acc": a}}
                for k, a in zip(batch.keys, accs, strict=True)
            },
        }
        metrics: dict = {}
        self._trainer(monkeypatch, store)._compute_metrics(batch, metrics, {}, global_steps=1, epoch=0)
        assert {k: v for k, v in metrics.items() if "/mask_" in k and k.startswith("reward/")} == {
            "reward/acc/mask_1": 0.5,
            "reward/acc/mask_3": 1.0,
        }
        assert metrics["reward/acc/mean"] == pytest.approx(0.75)  # the other metrics are unchanged

    def test_a_batch_without_extra_info_still_finishes_the_step(self, monkeypatch):
        batch = self._Batch(2)
        store = {"extra_fields": {k: {"reward_extra_info": {"acc": 1.0}} for k in batch.keys}}
        metrics: dict = {}
        self._trainer(monkeypatch, store)._compute_metrics(batch, metrics, {}, global_steps=1, epoch=0)
        assert metrics["reward/acc/mean"] == 1.0
        assert not any(k.startswith("reward/acc/mask_") for k in metrics)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([{"reward_extra_info": {"acc": 1.0}}, _Wrapped({"reward_extra_info": {"acc": 0}})], [1.0, 0]),
        ([{"reward_extra_info": {"score": 1.0}}, {"no_reward": 1}, None, "junk"], [None] * 4),
        ([], []),
    ],
)
def test_rollout_accs_stay_aligned_with_the_batch(fields, expected):
    assert trainer.rollout_accs(fields) == expected


class TestStallGuard:
    """A dead rollout worker leaves verl's buffer waiting forever; the guard turns that into one line."""

    class _Buffer:
        def __init__(self):
            self.pending_keys = {"train": set()}
            self.running_keys = {"train": {"a_0", "a_1"}}
            self.finished_keys = {"train": set()}
            self.failure_keys = {"train": set()}
            self.waits = 0

        def _wait_for_next_poll(self, partition_id, last_debug_time):
            self.waits += 1
            return last_debug_time + 1

    def _guarded(self, timeout_s=10.0):
        from masksearch.recipes.stall_guard import StallGuard

        now = [0.0]
        buffer = self._Buffer()
        StallGuard(buffer, timeout_s, clock=lambda: now[0]).install()
        return buffer, now

    def test_unchanged_running_trajectories_past_the_timeout_raise_one_line(self):
        from masksearch.recipes.stall_guard import RolloutStalled

        buffer, now = self._guarded()
        for t in (0.0, 5.0, 10.0):  # 10 s unchanged: not yet past the timeout
            now[0] = t
            assert (
                buffer._wait_for_next_poll("train", t) == t + 1
            )  # verl's wait still runs, its value returned
        now[0] = 10.5
        with pytest.raises(RolloutStalled) as err:
            buffer._wait_for_next_poll("train", 0.0)
        message = str(err.value)
        assert "\n" not in message and "no train rollout changed state for 10 s" in message
        assert "running 2" in message and "stall_timeout_s" in message and buffer.waits == 4

    def test_progress_resets_the_clock(self):
        buffer, now = self._guarded()
        buffer._wait_for_next_poll("train", 0.0)
        for t in (8.0, 16.0, 24.0):  # a trajectory finishes every 8 s: never 10 s without a change
            now[0] = t
            key = buffer.running_keys["train"].pop() if buffer.running_keys["train"] else None
            buffer.finished_keys["train"].add(key or f"b_{t}")
            buffer.running_keys["train"].add(f"c_{t}")
            buffer._wait_for_next_poll("train", 0.0)

    def test_nothing_running_is_not_a_stall(self):
        buffer, now = self._guarded()
        buffer.running_keys["train"].clear()
        for t in (0.0, 100.0, 1000.0):  # waiting for work to be dispatched is not the rollouts' fault
            now[0] = t
            buffer._wait_for_next_poll("train", 0.0)

    def test_zero_timeout_leaves_verls_method(self):
        buffer, _ = self._guarded(timeout_s=0)
        assert buffer._wait_for_next_poll.__func__ is self._Buffer._wait_for_next_poll

    def test_verl_buffer_has_what_the_guard_reads(self):
        import inspect

        from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

        source = inspect.getsource(ReplayBuffer.__init__)
        for name in ("pending_keys", "running_keys", "finished_keys", "failure_keys"):
            assert f"self.{name}" in source
        assert list(inspect.signature(ReplayBuffer._wait_for_next_poll).parameters) == [
            "self", "partition_id", "last_debug_time"
        ]  # fmt: skip

    def test_trainer_installs_it_from_the_sampler_settings(self, monkeypatch):
        built = TestReplayBufferPoll._built

        class Buffer(self._Buffer):
            poll_interval = 2.0
            filter_groups_metric = None

        from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

        monkeypatch.setattr(PPOTrainerSync, "_build_replay_buffer", lambda self: Buffer())
        from masksearch.recipes.trainer import MaskSearchTrainer

        trainer = object.__new__(MaskSearchTrainer)
        trainer.config = OmegaConf.create({"masksearch": {}})
        assert trainer._build_replay_buffer()._wait_for_next_poll.__self__.timeout_s == 1800.0
        assert built  # the poll-interval helper above builds the same way
        with pytest.raises(ValueError, match="stall_timeout_s must be >= 0"):
            TestReplayBufferPoll._built(monkeypatch, {"sampler": {"stall_timeout_s": -1}})


class TestFileLoggerHistory:
    def test_verl_file_logger_truncates_and_where_it_writes(self, tmp_path, monkeypatch):
        """Pins what set_aside exists for: verl's ``FileLogger`` opens its file with "wb" (a resumed run
        starts the file over), at ``VERL_FILE_LOGGER_PATH`` or ``<VERL_FILE_LOGGER_ROOT>/<project>/<experiment>.jsonl``."""
        from verl.utils.tracking import FileLogger

        from masksearch.core.jsonl import read_jsonl
        from masksearch.recipes.trainer import file_logger_path

        log = tmp_path / "metrics.jsonl"
        log.write_text('{"step": 1, "data": {}}\n', encoding="utf-8")
        monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(log))
        logger = FileLogger("p", "e")
        logger.log({"x": 1.0}, step=2)
        logger.finish()
        assert [r["step"] for r in read_jsonl(log)] == [2]
        assert file_logger_path("p", "e") == log
        monkeypatch.delenv("VERL_FILE_LOGGER_PATH")
        monkeypatch.setenv("VERL_FILE_LOGGER_ROOT", str(tmp_path / "root"))
        logger = FileLogger("p", "e")
        logger.finish()
        assert Path(logger.filepath) == file_logger_path("p", "e") == tmp_path / "root" / "p" / "e.jsonl"

    def test_a_resumed_run_sets_the_earlier_file_aside(self, tmp_path, monkeypatch):
        from masksearch.core.jsonl import read_jsonl_parts

        log = tmp_path / "metrics.jsonl"
        log.write_text('{"step": 1, "data": {}}\n', encoding="utf-8")
        monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(log))
        config = OmegaConf.create(
            {"trainer": {"logger": ["console", "file"], "project_name": "p", "experiment_name": "e"}}
        )
        assert trainer.keep_file_logger_history(config) == tmp_path / "metrics.jsonl.part1"
        log.write_text('{"step": 2, "data": {}}\n', encoding="utf-8")  # what the resumed run logs
        assert [r["step"] for r in read_jsonl_parts(log)] == [1, 2]
        config.trainer.logger = "console"  # no file logger: nothing touched
        assert trainer.keep_file_logger_history(config) is None and log.is_file()

    def test_verl_loads_the_checkpoint_before_fit_and_creates_its_logger_in_fit(self):
        """Why the hook sits in ``fit`` and reads ``global_steps`` (verl 0.9.1's order)."""
        import inspect

        from verl.trainer.ppo.v1.trainer_base import PPOTrainer

        assert "self._load_checkpoint()" in inspect.getsource(PPOTrainer._setup)
        assert "Tracking(" in inspect.getsource(PPOTrainer.fit)
        assert PPOTrainer in trainer.MaskSearchTrainer.__mro__

    def test_fit_sets_aside_on_resume_only(self, tmp_path, monkeypatch):
        from verl.trainer.ppo.v1.trainer_base import PPOTrainer

        log = tmp_path / "metrics.jsonl"
        monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(log))
        monkeypatch.setattr(PPOTrainer, "fit", lambda self, manager: "verl's fit")
        run = object.__new__(trainer.MaskSearchTrainer)  # no workers: only fit's own part runs
        run.config = OmegaConf.create(
            {"trainer": {"logger": ["file"], "project_name": "p", "experiment_name": "e"}}
        )
        # resumed: the earlier file is kept; then from scratch: verl starts over, the kept part is dropped
        for global_steps, kept in ((3, True), (0, False)):
            log.write_text('{"step": 1, "data": {}}\n', encoding="utf-8")
            run.global_steps = global_steps
            assert run.fit(None) == "verl's fit"
            assert (tmp_path / "metrics.jsonl.part1").is_file() is kept
