"""Explicit registry of answer rewards: name -> reward, or name -> factory of rewards.

An answer reward is any callable ``(prediction: str, golds: list[str]) -> float`` in ``[0, 1]``.
Three ways to name one (:func:`get`):

* a registered name: built-ins ``em``, ``f1``, ``recall``, ``recall_length_penalty``,
  ``llm_judge``;
* a name contributed by an installed package through the entry-point group
  ``masksearch.rewards`` (``[project.entry-points."masksearch.rewards"] myreward = "pkg.mod:fn"``);
* a spec ``path/to/file.py:function`` or ``package.module:function`` (or verl's
  ``pkg://package.module:function``), loaded with verl's ``load_extern_object``.

Parametrised rewards are registered as factories (``register(name, factory, factory=True)``;
a class is treated as a factory unless told otherwise); ``get(name, **options)`` builds one.
Options given to a plain reward are an error. Registering a name twice is an error unless
``overwrite=True``.

>>> get("em")("The Beatles", ["beatles"])
1.0
>>> get("recall_length_penalty", max_ratio=1.0)("x y", ["x"])
0.5
>>> get("nope")
Traceback (most recent call last):
...
KeyError: "Unknown reward 'nope'; registered: ['em', 'f1', 'llm_judge', 'recall', 'recall_length_penalty']"
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from masksearch.core.logs import module_logger
from masksearch.rewards.answer import RecallLengthPenalty, exact_match, token_f1, token_recall
from masksearch.rewards.judge import make_llm_judge

logger = module_logger(__name__)

__all__ = ["ENTRY_POINT_GROUP", "RewardFn", "get", "is_registered", "register", "registered"]

RewardFn = Callable[[str, list[str]], float]
ENTRY_POINT_GROUP = "masksearch.rewards"


@dataclass(frozen=True)
class _Entry:
    obj: Callable[..., Any]
    factory: bool
    source: str


_REGISTRY: dict[str, _Entry] = {}
_LOCK = threading.Lock()
_entry_points_loaded = False


def register(
    name: str,
    reward: Callable[..., Any],
    *,
    factory: bool | None = None,
    overwrite: bool = False,
    source: str = "code",
) -> Callable[..., Any]:
    """Register a reward (or a factory of rewards) under ``name``.

    Args:
        name: the name used in configs (``answer_reward=<name>``).
        reward: ``(prediction, golds) -> float``, or a factory ``(**options) -> reward``.
        factory: True if ``reward`` is a factory; default: True for classes, False otherwise.
        overwrite: allow replacing an existing name.
        source: where it came from (for error messages).

    Returns:
        ``reward`` unchanged.

    Raises:
        ValueError: empty name, not callable, or the name is taken (and not ``overwrite``).
    """
    if not isinstance(name, str) or not name.strip() or ":" in name:
        raise ValueError(f"Reward name must be a non-empty string without ':', got {name!r}")
    if not callable(reward):
        raise ValueError(f"Reward {name!r} must be callable, got {type(reward).__name__}")
    is_factory = inspect.isclass(reward) if factory is None else bool(factory)
    with _LOCK:
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"Reward {name!r} is already registered (from {_REGISTRY[name].source})")
        _REGISTRY[name] = _Entry(reward, is_factory, source)
    return reward


def _load_entry_points() -> None:
    """Register rewards from the ``masksearch.rewards`` entry-point group, once per process."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    try:
        eps = list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception as exc:  # broken metadata must not break the built-ins
        logger.warning("could not list entry points %s: %s", ENTRY_POINT_GROUP, exc)
        return
    for ep in eps:
        if ep.name in _REGISTRY:
            logger.warning("entry point reward %r (%s) ignored: name already registered", ep.name, ep.value)
            continue
        try:
            register(ep.name, ep.load(), source=f"entry point {ep.value}")
        except Exception as exc:
            logger.warning("entry point reward %r (%s) failed to load: %s", ep.name, ep.value, exc)


def registered() -> list[str]:
    """Sorted names of every registered reward (entry points included)."""
    _load_entry_points()
    return sorted(_REGISTRY)


def is_registered(name: str) -> bool:
    """Whether ``name`` is a registered reward (entry points included)."""
    _load_entry_points()
    return name in _REGISTRY


def _load_spec(spec: str) -> Callable[..., Any]:
    """Load ``path/to/file.py:attr`` or ``package.module:attr`` (also verl's ``pkg://package.module:attr``).

    The object is read by verl's ``load_extern_object``. A file is imported here first, once per
    process, under a name derived from its path that enters ``sys.modules`` before the file runs:
    verl's own file loading enters it after running it (or never), so a dataclass with string
    annotations there (``from __future__ import annotations``) would fail to build, classes defined
    there would not pickle, and every call would run the file again.
    """
    from verl.utils.import_utils import PKG_PATH_PREFIX, load_extern_object

    module_ref, _, attr = spec.rpartition(":")
    if not module_ref or not attr:
        raise KeyError(f"Bad reward spec {spec!r}; expected 'path/to/file.py:function' or 'pkg.mod:function'")
    module = module_ref.removeprefix(PKG_PATH_PREFIX)
    if module_ref.endswith(".py"):
        path = Path(module_ref).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"Reward file not found: {path} (from {spec!r})")
        module = "masksearch_user_reward_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        if module not in sys.modules:
            file_spec = importlib.util.spec_from_file_location(module, path)
            assert file_spec is not None and file_spec.loader is not None  # always, for a .py file
            sys.modules[module] = importlib.util.module_from_spec(file_spec)
            try:
                file_spec.loader.exec_module(sys.modules[module])
            except BaseException:
                sys.modules.pop(module, None)  # a fixed file loads on the next call
                raise
    try:
        return load_extern_object(PKG_PATH_PREFIX + module, attr)
    except AttributeError:
        raise AttributeError(
            f"{module_ref!r} has no attribute {attr!r} (from reward spec {spec!r})"
        ) from None


def get(name: str | RewardFn, **options: Any) -> RewardFn:
    """The answer reward for a name, an entry point, or a ``file.py:function`` spec.

    Args:
        name: registered name, spec with ``:``, or already a callable (returned as is).
        **options: constructor options for factory rewards (e.g. ``max_ratio``, ``url``).

    Returns:
        A callable ``(prediction, golds) -> float``.

    Raises:
        KeyError: unknown name ("Unknown reward 'x'; registered: [...]").
        ValueError: options given to a reward that takes none, or rejected by a factory.
    """
    if callable(name) and not isinstance(name, str):
        if options:
            raise ValueError("options cannot be applied to an already built reward callable")
        return name
    key = str(name).strip()
    if ":" in key:
        obj = _load_spec(key)
        entry = _Entry(obj, inspect.isclass(obj), key)
    else:
        _load_entry_points()
        entry = _REGISTRY.get(key)  # type: ignore[assignment]
        if entry is None:
            raise KeyError(f"Unknown reward {key!r}; registered: {sorted(_REGISTRY)}")
    if entry.factory:
        return entry.obj(**options)
    if options:
        raise ValueError(f"Reward {key!r} takes no options, got {sorted(options)}")
    return entry.obj


# ---- built-ins ----
register("em", exact_match, source="masksearch")
register("f1", token_f1, source="masksearch")
register("recall", token_recall, source="masksearch")
register("recall_length_penalty", RecallLengthPenalty, factory=True, source="masksearch")
register("llm_judge", make_llm_judge, factory=True, source="masksearch")
