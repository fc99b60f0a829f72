"""option(): a dataclass field that also describes its command-line flag.

A setting is declared once, on the frozen config dataclass that owns it; the CLI
(gateway/flags.py) reads this metadata to build its flags, so the name, default, help and
choices of a flag cannot drift from the value the engine or gateway reads. Fields declared
with a plain default (no help) are internal and get no flag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any

CLI_KEY = "sluicegate.cli"


@dataclass(frozen=True)
class FlagSpec:
    """How a field appears on the command line.

    flag: the long option (default: `--` + the field name with dashes). aliases: more option
    strings (`-m`). choices: accepted values. parse: turns the flag's text into the field's value
    (default: the field's scalar type). env: an environment variable that supplies the default.
    """

    help: str
    flag: str | None = None
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] | None = None
    parse: Callable[[str], Any] | None = None
    env: str | None = None


def option(default: Any = MISSING, *, help: str, flag: str | None = None, aliases: Sequence[str] = (),
           choices: Sequence[str] | None = None, parse: Callable[[str], Any] | None = None,
           env: str | None = None, default_factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with a default and the flag that sets it."""
    spec = FlagSpec(help=help, flag=flag, aliases=tuple(aliases), parse=parse, env=env,
                    choices=tuple(choices) if choices is not None else None)
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={CLI_KEY: spec})
    return field(default=default, metadata={CLI_KEY: spec})
