"""``pairkit`` command line: a thin layer that parses arguments, calls the library and prints.

Each command lives in its own module (``pairkit.cli.rank``, ``pairkit.cli.train``, ...) and registers itself
on the shared :data:`app`. Modules import heavy dependencies (torch, transformers, httpx) inside the commands.
"""

from __future__ import annotations

import importlib

from pairkit.cli._app import app

__all__ = ["app", "main"]

_COMMAND_MODULES = ("demo", "rank", "count", "compare", "judge", "simulate", "train", "arena")

for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"pairkit.cli.{_name}")
    except ModuleNotFoundError as exc:  # a command module not written yet
        if exc.name != f"pairkit.cli.{_name}":
            raise


def main() -> None:
    """Entry point of the ``pairkit`` script."""
    app()
