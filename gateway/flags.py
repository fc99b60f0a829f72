"""Command-line flags built from the settings dataclasses, and the dataclasses rebuilt from them.

Each setting is declared once, as an option() field on the frozen dataclass that reads it
(engine/config.py for the engine, gateway/settings.py for the server). add_flags() walks a
dataclass, nested sections included, and adds one flag per option() field; from_args() builds the
same dataclass back from the parsed namespace. A new flag is therefore one field declaration, and
every command that adds a dataclass's flags honours it.
"""

from __future__ import annotations

import argparse
import os
import types
import typing
from collections.abc import Iterator
from dataclasses import MISSING, Field, dataclass, fields, is_dataclass
from typing import Any, TypeVar

from sluicegate.engine.option import CLI_KEY, FlagSpec

T = TypeVar("T")


@dataclass(frozen=True)
class Flag:
    """One option() field found by walking a dataclass: where it sits and how it is spelled."""

    path: tuple[str, ...]  # field names from the walked class down to this field
    spec: FlagSpec
    field_type: Any
    default: Any

    @property
    def dest(self) -> str:
        return ".".join(self.path)

    @property
    def option_strings(self) -> list[str]:
        long = self.spec.flag or "--" + self.path[-1].replace("_", "-")
        return [long, *self.spec.aliases]


def _scalar(field_type: Any) -> Any:
    """int | None -> int; other annotations are returned as they are."""
    if isinstance(field_type, types.UnionType) or typing.get_origin(field_type) is typing.Union:
        args = [a for a in typing.get_args(field_type) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return field_type


def walk(cls: type, path: tuple[str, ...] = ()) -> Iterator[Flag]:
    """Every option() field of `cls` and of its nested dataclass sections, in declaration order."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        field_type = hints[f.name]
        if is_dataclass(field_type):
            yield from walk(field_type, (*path, f.name))  # type: ignore[arg-type]
        elif CLI_KEY in f.metadata:
            yield Flag((*path, f.name), f.metadata[CLI_KEY], _scalar(field_type), _default(f))


def unflagged(cls: type, path: tuple[str, ...] = ()) -> Iterator[str]:
    """Dotted paths of the fields that have no flag (internal settings)."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            yield from unflagged(hints[f.name], (*path, f.name))
        elif CLI_KEY not in f.metadata:
            yield ".".join((*path, f.name))


def _default(f: Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def add_flags(parser: argparse.ArgumentParser | Any, cls: type) -> None:
    """One argparse option per option() field of `cls` (and its sections)."""
    for flag in walk(cls):
        spec = flag.spec
        default = (os.environ.get(spec.env) or flag.default) if spec.env else flag.default
        kwargs: dict[str, Any] = {"dest": flag.dest, "default": default, "help": spec.help}
        if flag.field_type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            parse = spec.parse or flag.field_type
            if parse not in (str, int, float) and spec.parse is None:
                raise TypeError(f"{flag.dest}: a {flag.field_type!r} setting needs option(parse=...)")
            kwargs["type"] = parse
            kwargs["metavar"] = flag.option_strings[0].lstrip("-").replace("-", "_").upper()
            if spec.choices is not None:
                kwargs["choices"] = spec.choices
                del kwargs["metavar"]
        parser.add_argument(*flag.option_strings, **kwargs)


def from_args(cls: type[T], args: argparse.Namespace, path: tuple[str, ...] = ()) -> T:
    """Build `cls` from parsed flags; fields without a flag keep their defaults."""
    values = vars(args)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        dest = ".".join((*path, f.name))
        if is_dataclass(hints[f.name]):
            kwargs[f.name] = from_args(hints[f.name], args, (*path, f.name))
        elif CLI_KEY in f.metadata and dest in values:
            kwargs[f.name] = values[dest]
    return cls(**kwargs)
