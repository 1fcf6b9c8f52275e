"""Typed settings: a config group becomes a dataclass, checked once, with one line per mistake.

Every ``masksearch.*`` group is a dataclass whose field defaults are the only defaults; YAML and
command-line overrides only change them. :func:`load_settings` is the one door they come in by: it
hands each level to verl's ``omega_conf_to_dataclass`` (OmegaConf's structured merge catches
unknown keys and converts or refuses values, the same path verl checks its own groups by) and
turns OmegaConf's multi-line errors into one ``ValueError`` line that names the full key::

    Unknown masksearch.env key(s) ['topkk']; valid: ['max_turns', 'topk', ...]
    masksearch.health.format_drop: patience must be an int >= 1, got 1.5   (the dataclass's own check)
    masksearch.sampler.poll_interval_s must be a number, got 'fast'          (no check of its own)

Nested dataclasses are loaded one level at a time, on top of the field's default instance (a
frozen dataclass becomes a read-only OmegaConf node that a nested merge could not write into, and
a rule's defaults differ from another rule's). verl is imported inside the function, so importing
this module stays cheap for the lower layers that define settings dataclasses.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_KINDS = {int: "an int", float: "a number", bool: "true or false", str: "a string"}


def load_settings(cls: type[T], values: Mapping[str, Any] | Any | None, where: str) -> T:
    """Build ``cls`` from ``values`` (a dict, a DictConfig or ``None``); ``where`` names the group.

    ``None`` or an empty mapping gives the dataclass defaults. A DictConfig is resolved first, so
    interpolations such as ``${trainer.total_epochs}`` see the whole config they were taken from.
    Unknown keys, values of the wrong type and ``__post_init__`` checks all raise one-line
    ``ValueError``-s that name ``where``.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"load_settings needs a dataclass type, got {cls!r}")
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException
    from verl.utils.config import omega_conf_to_dataclass

    if isinstance(values, DictConfig):
        values = OmegaConf.to_container(values, resolve=True)
    names = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(values, Mapping | None):
        raise ValueError(f"{where} must be a group of settings ({', '.join(names)}), got {values!r}")
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    nested: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        sub = _dataclass_in(hints[f.name])
        if sub is not None and f.name in values:
            nested[f.name] = _load_nested(sub, _default_of(f), values.pop(f.name), f"{where}.{f.name}")
        elif hints[f.name] is bool and not isinstance(values.get(f.name, False), bool):
            # OmegaConf would read 'yes'/'off'/'1' as booleans; YAML and Hydra give real ones
            raise ValueError(f"{where}.{f.name} must be true or false, got {values[f.name]!r}")
    try:
        settings = omega_conf_to_dataclass(values, cls) if values else cls()
        return dataclasses.replace(settings, **nested) if nested else settings
    except ConfigKeyError:
        unknown = sorted(set(values) - set(names))
        raise ValueError(f"Unknown {where} key(s) {unknown}; valid: {names}") from None
    except OmegaConfBaseException as err:  # a value OmegaConf cannot convert to the field's type
        raise ValueError(_wrong_type(cls, values, hints, where, str(getattr(err, "key", "") or ""))) from None
    except (TypeError, ValueError) as err:  # a __post_init__ check
        raise ValueError(_prefixed(where, err)) from None


def _dataclass_in(annotation: Any) -> type | None:
    """The dataclass an annotation holds (``Inner`` or ``Inner | None``), else ``None``."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _load_nested(sub: type, default: Any, given: Any, where: str) -> Any:
    """A nested group: absent or ``None`` keeps the field's default; a mapping is laid over it."""
    if given is None:
        return default if default is not None else load_settings(sub, None, where)
    if isinstance(given, Mapping) and dataclasses.is_dataclass(default):
        from omegaconf import OmegaConf

        given = OmegaConf.to_container(OmegaConf.merge(dataclasses.asdict(default), dict(given)))
    return load_settings(sub, given, where)


def _prefixed(where: str, err: Exception) -> str:
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    return text if text.startswith(where) else f"{where}: {text}"


def _kind(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1 and len(typing.get_args(annotation)) == 2:
        return f"{_kind(args[0])} or null"
    return _KINDS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _wrong_type(cls: Any, values: dict[str, Any], hints: dict[str, Any], where: str, key: str) -> str:
    """The dataclass's own check on the raw values speaks first; else ``<key> must be <kind>``."""
    try:
        cls(**values)
    except ValueError as err:
        return _prefixed(where, err)
    except TypeError:
        pass
    if key not in hints:
        return f"{where}: a value of the wrong type in {values!r}"
    return f"{where}.{key} must be {_kind(hints[key])}, got {values.get(key)!r}"
