"""The layer order between masksearch's top-level parts holds: imports only go down, no cycles.

The checker is ``tests/layering.py`` (``python tests/layering.py`` prints the import-count table).
It is run over the repository, and over a copy with a forbidden import planted, to prove it fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import layering

REPO = Path(__file__).resolve().parents[1]


def _copy_parts(dst: Path) -> Path:
    """The parts' source files (what the checker reads) copied under ``dst``."""
    shutil.copy(REPO / "__init__.py", dst / "__init__.py")
    for rel, _part in layering.iter_part_files(REPO):
        if rel.name == "__init__.py" and len(rel.parts) == 1:
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, target)
    return dst


def test_repository_follows_the_layer_order():
    table, bad, loops = layering.report(REPO)
    assert bad == [], "imports against the layer order:\n" + "\n".join(bad) + "\n" + table
    assert loops == []


def test_every_part_is_known():
    """A new top-level package must get a level (else its imports would go unchecked)."""
    setup = (REPO / "setup.py").read_text(encoding="utf-8")
    listed = setup.split("SUBPACKAGES = [", 1)[1].split("]", 1)[0]
    parts = {line.strip().strip('",') for line in listed.splitlines() if line.strip().startswith('"')}
    assert parts <= set(layering.LEVELS), sorted(parts - set(layering.LEVELS))


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        ("core/_planted.py", "import masksearch.cli.main\n", "core -> cli (import)"),  # static, upward
        (
            "rewards/_planted.py",
            "import importlib\nimportlib.import_module('masksearch.env.session')\n",
            "rewards -> env (string)",
        ),  # import_module by string
        ("data/_planted.py", "from masksearch.eval import runner\n", "data -> eval (import)"),  # from-import
        (
            "search_tool/_planted.py",
            "from ..data import corpus\n",
            "search_tool -> data (import)",
        ),  # relative
        (
            "backends/_planted.py",
            "CMD = ['python', '-m', 'masksearch.recipes.dapo_ramp']\n",
            "backends -> recipes (string)",
        ),  # -m target
        ("env/config/_planted.yaml", "loop:\n  _target_: masksearch.sft.agents.X\n", "env -> sft (string)"),
        ("curriculum/_planted.yaml", "path: pkg://masksearch.data.qa\n", "curriculum -> data (string)"),
        (
            "eval/_planted.sh",
            'python -m masksearch.viewer.cli "$@"\n',
            "eval -> viewer (string)",
        ),  # same level
    ],
)
def test_planted_forbidden_import_is_caught(tmp_path, path, text, expected):
    root = _copy_parts(tmp_path)
    assert layering.report(root)[1] == []  # the copy is clean
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text, encoding="utf-8")
    bad = layering.report(root)[1]
    assert len(bad) == 1 and expected in bad[0] and path in bad[0], bad


def test_cycle_is_reported_and_the_script_fails(tmp_path):
    root = _copy_parts(tmp_path)
    (root / "eval" / "_planted.py").write_text("from masksearch.sft import agents\n", encoding="utf-8")
    (root / "sft" / "_planted.py").write_text("from masksearch.eval import runner\n", encoding="utf-8")
    _table, bad, loops = layering.report(root)
    assert len(bad) == 2 and ["eval", "sft"] in loops
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "layering.py"), str(root)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "CYCLE eval <-> sft" in proc.stdout and "2 violation(s), 1 cycle(s)" in proc.stdout


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('"""Docstring naming masksearch.cli.main is documentation."""\n', []),  # docstrings skipped
        ("X = 'masksearch.env.max_turns=4'\n", []),  # a Hydra override, not a module path
        ("X = 'masksearch.cli.main:main'\n", [("cli", 1, "string")]),  # an entry-point spec
        ("import masksearch\n", [("core", 1, "import")]),  # the root package is core
        ("from masksearch import cache_root, env\n", [("core", 1, "import"), ("env", 1, "import")]),
    ],
)
def test_what_counts_as_an_import(text, found):
    assert layering.python_imports(text, Path("data/x.py")) == found


def test_table_lists_every_part_in_order():
    table = layering.count_table(layering.collect_edges(REPO))
    rows = [line.split("|")[0].strip() for line in table.splitlines()[2:]]
    assert rows == list(layering.PARTS)
