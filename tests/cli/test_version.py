"""`pairkit --version` reports the installed distribution's version, defined once in pairkit.__version__."""

from importlib.metadata import version

from typer.testing import CliRunner

import pairkit
from pairkit.cli import app


def test_version_flag_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"pairkit {pairkit.__version__}"
    assert version("pairkit") == pairkit.__version__
