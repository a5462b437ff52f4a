"""``pairkit`` command line: a thin layer that parses arguments, calls the library and prints.

Each command lives in its own module (``pairkit.cli.rank``, ``pairkit.cli.train``, ...) and registers itself
on the shared :data:`app`. Modules import heavy dependencies (torch, transformers, httpx) inside the commands.
The ``pairkit`` script registers only the command it runs (``pairkit rank`` does not import the other seven
modules); ``pairkit.cli.app``, ``pairkit --help`` and an unknown command get them all.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["app", "main"]

_COMMAND_MODULES = ("demo", "rank", "count", "compare", "judge", "simulate", "train", "arena")


def _register(names: tuple[str, ...] = _COMMAND_MODULES) -> None:
    for name in names:
        try:
            importlib.import_module(f"pairkit.cli.{name}")
        except ModuleNotFoundError as exc:  # a command module not written yet
            if exc.name != f"pairkit.cli.{name}":
                raise


def __getattr__(name: str) -> Any:
    if name == "app":  # the application with every command registered
        from pairkit.cli._app import app

        _register()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Entry point of the ``pairkit`` script."""
    from pairkit.cli._app import app

    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    _register((command,) if command in _COMMAND_MODULES else _COMMAND_MODULES)
    app()
