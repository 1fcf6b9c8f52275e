"""The ``verl.plugins`` entry point really loads — verl swallows plugin import errors silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest


def _run_python(code: str, **env: str) -> dict:
    merged = {**os.environ, **env}
    for key in ("VERL_PLATFORM", "VERL_ENGINE_DEVICE"):
        if key not in env:
            merged.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=merged, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


PROBE = """
import json, sys, verl
from verl.utils.device import get_device_name, get_nccl_backend, get_resource_name
from masksearch.backends.plugin import STATE
print(json.dumps({"loaded": "masksearch.backends.plugin" in sys.modules, "state": STATE,
                  "device": get_device_name(), "backend": get_nccl_backend(), "resource": get_resource_name()}))
"""


class TestEntryPoint:
    def test_registered_in_verl_plugins_group(self):
        names = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
        assert names.get("masksearch") == "masksearch.backends.plugin"

    def test_import_verl_loads_plugin_and_selects_cpu_platform(self):
        result = _run_python(PROBE)
        assert result["loaded"] and result["state"]["loaded"] and result["state"]["error"] is None
        assert result["state"]["cpu"] is True
        assert (result["device"], result["backend"], result["resource"]) == ("cpu", "gloo", "GPU")

    def test_accelerator_mode_leaves_verl_untouched(self):
        # What a GPU machine gets: no CPU platform, verl's own detection (here its 'nvidia' fallback).
        result = _run_python(PROBE, MASKSEARCH_DEVICE="accelerator")
        assert result["state"]["loaded"] and result["state"]["cpu"] is False
        assert (result["device"], result["backend"]) == ("cuda", "nccl")

    def test_wrong_verl_version_is_reported_not_patched(self, monkeypatch, caplog):
        import verl

        from masksearch.backends import plugin

        monkeypatch.setattr(verl, "__version__", "0.0.0")
        monkeypatch.setattr(plugin, "STATE", {"loaded": False, "cpu": False, "error": None})
        with caplog.at_level("ERROR"):
            plugin.activate()
        assert plugin.STATE["loaded"] is False
        assert "pip install verl==0.9.1" in caplog.text


@pytest.mark.slow
def test_plugin_is_active_inside_ray_workers():
    code = """
import json, ray, verl
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)

@ray.remote
def probe():
    import sys
    from verl.utils.device import get_device_name
    from masksearch.backends.plugin import STATE
    return {"loaded": "masksearch.backends.plugin" in sys.modules, "cpu": STATE["cpu"], "device": get_device_name()}

print(json.dumps(ray.get(probe.remote())))
ray.shutdown()
"""
    result = _run_python(code)
    assert result == {"loaded": True, "cpu": True, "device": "cpu"}
