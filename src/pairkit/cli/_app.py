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


def _print_version(value: bool) -> None:
    if value:
        from pairkit import __version__

        typer.echo(f"pairkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    """pairkit: learning from comparisons — rate, select comparisons, train."""
