"""Run a callback right after a module is imported, without importing it ourselves.

Our ``verl.plugins`` entry point runs inside ``import verl`` in every process, Ray workers included.
Importing verl's trainer or rollout modules there would add seconds to every worker's start-up
(and risk circular imports while ``verl`` is half-initialised), so registrations and patches that
target those modules are deferred until the module is imported by verl itself.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType

logger = logging.getLogger(__name__)

Callback = Callable[[ModuleType], None]

_callbacks: dict[str, list[Callback]] = {}
_lock = threading.RLock()


def when_imported(module_name: str, callback: Callback) -> None:
    """Call ``callback(module)`` once ``module_name`` has been imported (now, if it already is)."""
    with _lock:
        module = sys.modules.get(module_name)
        if module is None or getattr(module, "__spec__", None) is None or _is_initialising(module):
            _callbacks.setdefault(module_name, []).append(callback)
            _install_finder()
            return
    callback(module)


def _is_initialising(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    return bool(spec is not None and getattr(spec, "_initializing", False))


class _PostImportLoader(importlib.abc.Loader):
    """Wraps the real loader: executes the module, then fires the callbacks registered for it."""

    def __init__(self, wrapped: importlib.abc.Loader, name: str) -> None:
        self._wrapped = wrapped
        self._name = name

    def create_module(self, spec):
        return self._wrapped.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._wrapped.exec_module(module)
        with _lock:
            callbacks = _callbacks.pop(self._name, [])
        for callback in callbacks:
            callback(module)

    def __getattr__(self, item):  # get_code, get_source, ... used by tracebacks and inspect
        return getattr(self._wrapped, item)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        with _lock:
            if fullname not in _callbacks:
                return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PostImportLoader(spec.loader, fullname)
        return spec


_finder = _PostImportFinder()


def _install_finder() -> None:
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
