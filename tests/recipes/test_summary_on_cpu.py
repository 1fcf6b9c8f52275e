"""The end-of-demo summary reads real tensorboard event files."""

from __future__ import annotations

from torch.utils.tensorboard import SummaryWriter

from masksearch.recipes.summary import format_summary, last_scalars, main


def test_last_values_of_headline_curves(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "run"))
    for step, acc in ((1, 0.25), (2, 0.5), (3, 0.75)):
        writer.add_scalar("reward/acc/mean", acc, step)
        writer.add_scalar("env/searches_per_sample", step, step)
    writer.add_scalar("not/headline", 9.0, 3)
    writer.close()
    latest = last_scalars(tmp_path)
    assert latest["reward/acc/mean"] == (3, 0.75)
    text = format_summary(latest, tmp_path)
    assert "step 3" in text and "reward/acc/mean" in text and "not/headline" not in text


def test_empty_logdir_is_reported(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert "no scalars" in capsys.readouterr().out
