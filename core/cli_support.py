"""What every ``masksearch`` entry point shares: the ``--log-level`` flag, the one-line error
wrapper, command groups, commands that carry their handler, flags whose help states their default,
and settings built from the flags named like their fields.

Lives in core (the lowest layer) so the top-level CLI and each part's stand-alone ``main()`` can use
it; it imports only the standard library and :mod:`masksearch.core.errors`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from masksearch.core.errors import UserFacingError

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

T = TypeVar("T")


LOG_LEVEL_HELP = "Python logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL (default: INFO)."


def add_log_level(parser: argparse.ArgumentParser, help: str | None = LOG_LEVEL_HELP) -> None:
    """``--log-level`` (default INFO) on the top-level parser.

    Call :func:`add_log_level_to_subcommands` once every subcommand is registered, so the flag is
    also accepted after the subcommand (``masksearch index build … --log-level DEBUG``).
    """
    parser.add_argument("--log-level", default="INFO", help=help)


def add_log_level_to_subcommands(parser: argparse.ArgumentParser, help: str = LOG_LEVEL_HELP) -> None:
    """Accept ``--log-level`` on every subcommand and nested action of ``parser`` too.

    The copies default to ``argparse.SUPPRESS``: a subcommand that is not given the flag leaves the
    top-level value (INFO unless set) in place, and one that is given it overrides an earlier value,
    so the last ``--log-level`` on the command line wins. The value is checked by
    :func:`configure_logging`, as for the top-level flag.
    """
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for sub in dict.fromkeys(action.choices.values()):  # an alias maps to the same parser
            if "--log-level" not in sub._option_string_actions:
                sub.add_argument("--log-level", default=argparse.SUPPRESS, help=help)
            add_log_level_to_subcommands(sub, help)


def configure_logging(value: object, prog: str = "masksearch") -> bool:
    """Set up logging at ``value`` (``--log-level``); a bad name prints one line and returns False."""
    level = str(value).upper()
    if not isinstance(logging.getLevelName(level), int):  # "bogus" -> one line, not a traceback
        print(
            f"{prog}: error: --log-level {value!r}: choose DEBUG, INFO, WARNING, ERROR or CRITICAL",
            file=sys.stderr,
        )
        return False
    logging.basicConfig(level=level, format=LOG_FORMAT)
    return True


def run_handler(handler: Callable[[argparse.Namespace], object], args: argparse.Namespace, label: str) -> int:
    """Run a subcommand's handler; a :class:`UserFacingError` becomes ``label: error: …`` and exit 2."""
    try:
        return int(handler(args) or 0)
    except UserFacingError as exc:
        print(f"{label}: error: {exc}", file=sys.stderr)
        return 2


def add_group(
    subparsers: argparse._SubParsersAction,
    name: str,
    help: str,
    dest: str,
    *,
    metavar: str = "<action>",
    required: bool = False,
) -> argparse._SubParsersAction:
    """``masksearch <name> <action>``: the group's sub-actions; a bare ``masksearch <name>`` prints the
    group's help and exits 2 (``required``: argparse's "the following arguments are required" line, exit 2)."""
    group = subparsers.add_parser(name, help=help)
    group.set_defaults(handler=lambda _args: group.print_help() or 2)
    return group.add_subparsers(dest=dest, metavar=metavar, required=required)


def add_command(
    subparsers: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], object]
) -> argparse.ArgumentParser:
    """Subcommand ``name``, run by ``handler``, whose docstring is its help: the first paragraph the
    one-line ``help`` of the command list, the rest (if any) the ``description`` of its own ``--help``.

    The text a user reads stays next to the code that does it; white space is folded, as argparse does.
    """
    first, _, rest = (handler.__doc__ or "").strip().partition("\n\n")
    description = " ".join(rest.split()) or None
    parser = subparsers.add_parser(name, help=" ".join(first.split()), description=description)
    parser.set_defaults(handler=handler)
    return parser


def add_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    default: Any,
    help: str,
    *,
    shown: str | None = None,
    **kwargs: Any,
) -> argparse.Action:
    """``flag`` with ``default``, its help ending in `` (default: …).`` as every flag's help must.

    The type comes from the default (``int``, ``float``; ``False`` makes a switch), ``shown`` replaces
    the default's text (``"all"`` for ``None``); a ``None`` or ``False`` default without ``shown`` leaves
    ``help`` as given. Other ``add_argument`` keywords (``type``, ``choices``, ``metavar``…) pass through.
    """
    if default is False:
        kwargs.setdefault("action", "store_true")
    elif isinstance(default, int | float) and not isinstance(default, bool):
        kwargs.setdefault("type", type(default))
    if shown is None and default is not None and default is not False:
        shown = f"{default:g}" if isinstance(default, float) else str(default)
    note = f" (default: {shown})." if shown is not None else ""
    return parser.add_argument(flag, default=default, help=help + note, **kwargs)


def flag_values(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """``{name: args.<name>}`` for those ``names`` that are flags of ``args``: keyword arguments of a
    call whose parameters carry the flags' names (instead of ``name=args.name`` one by one)."""
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def settings_from_args(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """``cls`` (a dataclass) from the flags named like its fields; ``given`` adds or replaces values.

    Fields with no such flag keep their defaults.
    """
    return cls(**{**flag_values(args, (f.name for f in dataclasses.fields(cls))), **given})
