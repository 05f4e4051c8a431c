"""CLI errors that name the user's flag (``--delta``), not the Python parameter behind it (``delta``).

privlab's library errors follow one shape, ``The 'delta' parameter of epsilon must be ... Got ...
instead.``; a command knows which of its flags fed which library parameter. :func:`flag_message`
rewrites the message for the command line, and :func:`cli_errors` wraps a command body so that
every :class:`~privlab.errors.PrivlabError` ends as ``error: <message>`` and exit status 2.

>>> flag_message("The 'name' parameter of load_dataset must be one of 'mnist'. Got 'cifar10' instead.",
...              {"name": "--dataset"})
"The --dataset option must be one of 'mnist'. Got 'cifar10' instead."
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import typer

from privlab.errors import PrivlabError

# "The 'x' parameter of OWNER <verb>": OWNER is one or two words ("epsilon", "privlab attack").
_PARAM = re.compile(
    r"The '(?P<name>--[A-Za-z][A-Za-z0-9-]*|[A-Za-z_][A-Za-z0-9_]*)' parameter of (?P<owner>\S+(?: \S+)??) "
    r"(?=(?:must|is|needs|has|cannot|requires|should)\b)"
)


def _current_context() -> Any:
    """The running command's context: Typer >= 0.20 runs on its own copy of Click, older ones on Click."""
    try:
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - Typer on the click package
        from click import get_current_context  # type: ignore[no-redef]
    return get_current_context(silent=True)


def command_flags(ctx: Any = None) -> dict[str, str]:
    """``{python name: --flag}`` for every option of the running command (empty outside a command)."""
    ctx = ctx or _current_context()
    if ctx is None:
        return {}
    flags: dict[str, str] = {}
    for p in ctx.command.params:
        opts = [o for o in getattr(p, "opts", []) if o.startswith("-")]
        if p.name and opts and getattr(p, "param_type_name", "") == "option":
            longs = [o for o in opts if o.startswith("--")]
            flags[p.name] = longs[0] if longs else opts[0]
    return flags


def flag_message(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with every ``The 'x' parameter of f`` whose ``x`` has a flag replaced by ``The --x option``."""

    def sub(m: re.Match[str]) -> str:
        name = m.group("name")
        flag = name if name.startswith("--") else flags.get(name)  # already a flag (named by the resolver)
        return f"The {flag} option " if flag else m.group(0)

    return _PARAM.sub(sub, message)


@contextlib.contextmanager
def cli_errors(extra: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn a :class:`PrivlabError` raised inside into ``error: ...`` (naming flags) and exit status 2.

    ``extra`` maps library parameter names that differ from the flag's Python name (e.g.
    ``{"name": "--dataset"}`` for :func:`privlab.data.load_dataset`); the command's own options
    are mapped automatically.
    """
    try:
        yield
    except PrivlabError as exc:
        flags = command_flags() | dict(extra or {})
        typer.echo(f"error: {flag_message(str(exc), flags)}", err=True)
        raise typer.Exit(2) from exc
