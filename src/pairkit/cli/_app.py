"""The typer application that every CLI command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="pairkit",
    help="Learning from comparisons: rate, select comparisons, train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """pairkit: learning from comparisons — rate, select comparisons, train."""
