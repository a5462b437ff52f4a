"""`import pairkit.judges` stays light: scipy (whose stats module alone takes ~0.5 s) is imported on first use."""

import subprocess
import sys

CODE = """
import sys
import pairkit.judges
heavy = sorted(m for m in sys.modules if m.split('.')[0] == 'scipy')
print(heavy)
from pairkit.judges import calibrate_threshold, simulated_probabilities
calibrate_threshold([0.9] * 40, [True] * 40)
simulated_probabilities([0.0])
print('scipy.stats' in sys.modules, 'scipy.special' in sys.modules)
"""


def test_import_judges_does_not_import_scipy_stats():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()
    assert first == "[]", f"import pairkit.judges imported {first}"
    assert second == "True True"  # the lazy imports do happen when the functions are used
