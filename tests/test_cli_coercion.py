"""The command line's value coercion without pydantic (custody/cli/coercion.py) gives what typer's
own gives, for every parameter of every command, and a command line no longer imports pydantic."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer._click import Context
from typer._coercion import build_runtime_param

from custody.cli.app import command
from custody.cli.coercion import PlainCoercion


def _params(cmd: Any, ctx: Context) -> list[tuple[Any, Context]]:
    found = [(p, ctx) for p in cmd.params]
    help_option = cmd.get_help_option(ctx)
    if help_option is not None:
        found.append((help_option, ctx))
    for sub in getattr(cmd, "commands", {}).values():
        found += _params(sub, Context(sub, parent=ctx))
    return found


def _outcome(coercion: Any, value: Any, param: Any, ctx: Context) -> tuple[str, str, str]:
    try:
        got = coercion.coerce(value, param=param, ctx=ctx)
    except Exception as exc:  # noqa: BLE001 - the error itself is what is compared
        return ("error", type(exc).__name__, exc.format_message() if hasattr(exc, "format_message")
                else str(exc))
    return ("value", type(got).__name__, repr(got))


def test_plain_coercion_gives_what_typer_gives_for_every_parameter(tmp_path: Path) -> None:
    existing = tmp_path / "evidence.jpg"
    existing.write_bytes(b"x")
    texts = ["", ".", "-", "x", "a b", " 10 ", "10", "-3", "007", "2.5", "-0.5", "1e3", "1_000",
             "0x10", "٣", "a\udcffb", "~/x", "abc", str(existing), str(tmp_path),
             str(tmp_path / "absent"), "9" * 30]
    root = command()
    params = _params(root, Context(root))
    plain = [(p, ctx) for p, ctx in params if isinstance(p._runtime_param, PlainCoercion)]
    assert len(plain) >= 0.9 * len(params)  # nearly all: the few left use typer's own
    compared = 0
    for param, ctx in plain:
        typer_own = build_runtime_param(param.type_descriptor)
        multi = param.multiple or param.nargs == -1
        values: list[Any] = [None, param.default, True, 3, 2.5]
        values += [tuple(texts[i:i + 2]) for i in range(0, len(texts), 2)] if multi else texts
        for value in values:
            mine = _outcome(param._runtime_param, value, param, ctx)
            theirs = _outcome(typer_own, value, param, ctx)
            assert mine == theirs, (param.name, param.type_descriptor.annotation, value)
            compared += 1
    assert compared > 1000


def test_a_command_line_does_not_import_pydantic(cli) -> None:
    # typer's adapters import pydantic: about a third of a short command's CPU
    for args in (["verify"], ["search", "--limit", "3", "--json"], ["list", "--help"]):
        result = cli(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
        imported = [line for line in result.stderr.splitlines() if line.startswith("import time")]
        assert imported, result.stderr
        assert not [line for line in imported if "pydantic" in line], args
    assert os.environ.get("PYTHONPROFILEIMPORTTIME") is None


@pytest.mark.parametrize("args", [["search", "--limit", "abc"], ["search", "--limit", "1.5"]])
def test_a_bad_number_still_gets_typers_own_message(cli, args: list[str]) -> None:
    result = cli(*args)
    assert result.code == 2
    assert "Invalid value for '--limit'" in result.stderr
