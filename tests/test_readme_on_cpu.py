"""README.md is read on other machines: it names no absolute path of the machine a run was made on."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

# a path that starts at a machine's root folder for homes, work and scratch space
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:root|home|work|tmp|Users)/[\w.-]+")


def test_readme_names_no_machine_path():
    text = README.read_text(encoding="utf-8")
    assert MACHINE_PATH.findall(text) == []


def test_what_a_cpu_run_can_show_is_said_once():
    assert README.read_text(encoding="utf-8").count("What a CPU run can show") == 1


def test_manual_install_lists_the_makefile_data_packages():
    makefile = (README.parent / "Makefile").read_text(encoding="utf-8")
    packages = re.search(r"^DATA_PACKAGES := (.+)$", makefile, re.M).group(1).split()
    text = README.read_text(encoding="utf-8")
    for package in packages:
        assert package in text, package
