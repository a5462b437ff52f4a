"""`import pairkit`, the rating code and the CLI must work without torch installed."""

import subprocess
import sys

CODE = """
import sys
sys.modules['torch'] = None  # any `import torch` now raises ImportError
sys.modules['transformers'] = None
import pairkit
from pairkit.data import read_comparisons
from pairkit.rating import fit_bradley_terry
from pairkit.cli import app
from typer.testing import CliRunner
result = CliRunner().invoke(app, ['--help'])
assert result.exit_code == 0, result.output
assert 'rank' in result.output and 'demo' in result.output
c = pairkit.Comparisons.from_arrays(['a', 'b', 'c'], ['b', 'c', 'a'])
print(fit_bradley_terry(c).log_strength.round(6).tolist())
"""


def test_core_and_cli_import_without_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "[0.0, 0.0, 0.0]" in out.stdout
