"""The recipes' ``verl.plugins`` entry point registers the masksearch trainer mode and agent loop.

The composition root is the only part that registers into verl; the generic backends plugin
(tests/backends/test_plugin_on_cpu.py) no longer knows the recipe or the env.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

PROBE = """
import json, sys, verl
before = {m: m in sys.modules for m in ("masksearch.recipes.trainer", "masksearch.env.agent_loop")}
from masksearch.recipes.plugin import STATE
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY
from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
print(json.dumps({"before": before, "state": STATE, "trainer": "masksearch" in TRAINER_REGISTRY,
                  "agent": "masksearch_agent" in _agent_loop_registry}))
"""


def test_registered_in_verl_plugins_group():
    names = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert names.get("masksearch_recipes") == "masksearch.recipes.plugin"
    assert names.get("masksearch") == "masksearch.backends.plugin"


def test_import_verl_registers_lazily():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["before"] == {"masksearch.recipes.trainer": False, "masksearch.env.agent_loop": False}
    assert out["state"] == {"loaded": True, "error": None}
    assert out["trainer"] is True and out["agent"] is True


def test_backends_plugin_registers_nothing_of_the_recipe():
    import masksearch.backends.plugin as plugin

    source = Path(plugin.__file__).read_text(encoding="utf-8")
    code = source.split('"""', 2)[2]  # past the module docstring
    assert "masksearch.recipes" not in code and "masksearch.env" not in code
