"""typer's coercion of command-line text, without importing pydantic for the values that need none.

typer (0.29) turns every parameter's value into its annotated type through a pydantic TypeAdapter
built on first use, even for a default of None. Importing pydantic and building the adapters is
about a third of the CPU of a short command such as `custody verify` (docs/PERFORMANCE.md, "Test
suite and CLI start"). For what custody's commands take, typer's adapter does nothing pydantic is
needed for: a str stays the same str; a Path is `Path(text)` and then typer's own path checks
(`coerce_cli_path`); an int or a float default is returned as it is; plain decimal text becomes
`int(text)` or `float(text)`. `fast_coercion` gives each such parameter a coercion that does
exactly that and hands anything else (another type, a parser, a constraint, a value of another
form) to typer's own adapter, unchanged. tests/test_cli_coercion.py checks, for every parameter of
every command, that both give the same value or the same error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from typer._click import Context
from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param
from typer._param_types import coerce_cli_path
from typer.core import TyperArgument, TyperOption

_INT = re.compile(r"-?[0-9]{1,18}")  # pydantic and int() read these alike
_FLOAT = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,15})?")
_LEAVES = (str, Path, int, float, bool)  # bool: only None (coerce's own case) skips typer's


class _Unhandled(Exception):
    """The value is not one this coercion knows to be trivial: typer's adapter decides."""


@dataclass(frozen=True)
class PlainCoercion(RuntimeParam):
    """typer's RuntimeParam for str, Path, int and float values (alone or in a list)."""

    descriptor: TypeDescriptor

    def _coerce_value(self, value: Any, param: Any, ctx: Context) -> Any:
        leaf = _leaf(self.annotation)
        try:
            if leaf is not self.annotation:  # list[X]: typer gives a tuple of texts
                if not isinstance(value, (list, tuple)):
                    raise _Unhandled
                return [self._one(leaf, item, param, ctx) for item in value]
            return self._one(leaf, value, param, ctx)
        except _Unhandled:
            typer_own = build_runtime_param(self.descriptor)
            return typer_own._coerce_value(value, param=param, ctx=ctx)

    def _one(self, leaf: Any, value: Any, param: Any, ctx: Context) -> Any:
        if leaf is str and type(value) is str:
            return value
        if leaf is Path and type(value) is str and "\x00" not in value:
            try:
                return coerce_cli_path(Path(value), self.parameter_info, path_type=Path,
                                       param=param, ctx=ctx)
            except ValueError as exc:  # typer's adapter words this one (pydantic's message)
                raise _Unhandled from exc
        if leaf is int and (type(value) is int or (type(value) is str and _INT.fullmatch(value))):
            return int(value)
        if leaf is float and (type(value) is float
                              or (type(value) is str and _FLOAT.fullmatch(value))):
            return float(value)
        raise _Unhandled


def _leaf(annotation: Any) -> Any:
    """X for list[X], else the annotation itself."""
    if get_origin(annotation) is list and len(get_args(annotation)) == 1:
        return get_args(annotation)[0]
    return annotation


def handles(descriptor: TypeDescriptor) -> bool:
    """Whether the parameter's adapter would only do what PlainCoercion does."""
    info = descriptor.parameter_info
    leaf = _leaf(descriptor.annotation)
    if descriptor.file_annotation is not None or info.parser is not None or leaf not in _LEAVES:
        return False
    if leaf in (int, float):
        return info.min is None and info.max is None and not info.clamp
    return leaf is not Path or info.path_type is None


def _plain(param: Any) -> None:
    if isinstance(param, (TyperArgument, TyperOption)) and param._runtime_param is None \
            and handles(param.type_descriptor):
        descriptor = param.type_descriptor
        param._runtime_param = PlainCoercion(  # typer's lazily built slot, filled first
            parameter_info=descriptor.parameter_info, annotation=descriptor.annotation,
            descriptor=descriptor)


def fast_coercion(command: Any) -> Any:
    """Give every parameter of `command` and its subcommands PlainCoercion where it applies,
    including the --help option typer makes when a command line is parsed (a bool that is None
    unless given)."""
    for param in getattr(command, "params", []):
        _plain(param)
    if hasattr(command, "get_help_option"):
        made = command.get_help_option

        def get_help_option(ctx: Context, made: Any = made) -> Any:
            option = made(ctx)
            _plain(option)
            return option

        command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        fast_coercion(sub)
    return command
