"""core.atomic: a writer killed (SIGKILL) in the middle leaves the old file or none, never a torn one."""

from __future__ import annotations

import time

import pytest

from masksearch.core.atomic import atomic_dir, atomic_path, atomic_write_json, atomic_write_text


class TestKilledMidWrite:
    def test_old_file_survives(self, tmp_path, kill_mid_write):
        target = tmp_path / "run.json"
        target.write_text('{"old": true}\n')
        kill_mid_write(
            f"""
            from masksearch.core.atomic import atomic_write_json
            atomic_write_json({str(target)!r}, {{"new": "x" * 100000}})
            """,
            tmp_path,
        )
        assert target.read_text() == '{"old": true}\n'

    def test_no_file_rather_than_a_torn_one(self, tmp_path, kill_mid_write):
        target = tmp_path / "report.json"
        kill_mid_write(
            f"""
            from masksearch.core.atomic import atomic_write_text
            atomic_write_text({str(target)!r}, "y" * 100000)
            """,
            tmp_path,
        )
        assert not target.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report.json.tmp-")]  # only the temp


class TestHelpers:
    def test_write_and_replace(self, tmp_path):
        path = atomic_write_json(tmp_path / "a" / "x.json", {"k": 1}, indent=2)
        assert path.read_text() == '{\n  "k": 1\n}\n'
        atomic_write_text(path, "new")
        assert path.read_text() == "new" and [p.name for p in path.parent.iterdir()] == ["x.json"]

    def test_error_keeps_the_old_file_and_no_temp(self, tmp_path):
        target = tmp_path / "t.bin"
        target.write_bytes(b"old")
        with pytest.raises(RuntimeError), atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("writer failed")
        assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]

    def test_dir_replaces_a_whole_folder(self, tmp_path):
        target = tmp_path / "merged"
        target.mkdir()
        (target / "old.txt").write_text("old")
        with atomic_dir(target) as tmp:
            assert not (tmp / "old.txt").exists()
            (tmp / "model.safetensors").write_text("w")
        assert sorted(p.name for p in target.iterdir()) == ["model.safetensors"]
        assert [p.name for p in tmp_path.iterdir()] == ["merged"]

    def test_dir_error_leaves_the_old_folder(self, tmp_path):
        target = tmp_path / "merged"
        target.mkdir()
        (target / "old.txt").write_text("old")
        with pytest.raises(ValueError), atomic_dir(target) as tmp:
            (tmp / "half").write_text("h")
            raise ValueError("merge failed")
        assert [p.name for p in target.iterdir()] == ["old.txt"] and [p.name for p in tmp_path.iterdir()] == [
            "merged"
        ]

    def test_dir_killed_mid_fill_leaves_no_target(self, tmp_path, kill_mid_write):
        target = tmp_path / "merged"
        kill_mid_write(
            f"""
            import pathlib
            from masksearch.core.atomic import atomic_dir
            with atomic_dir({str(target)!r}) as tmp:
                (tmp / "config.json").write_text("{{}}")
                (tmp / "model.safetensors").write_bytes(b"z" * 100000)
            """,
            tmp_path,
        )
        time.sleep(0.1)
        assert not target.exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_follow_the_umask(tmp_path, umask):
    """mkstemp/mkdtemp make 0600/0700 entries; once renamed onto a target they get the umask's mode."""
    import os

    from masksearch.core.atomic import atomic_dir, atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.json", "{}")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "inside.txt").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~umask
