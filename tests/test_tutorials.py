"""Every tutorial in docs/tutorials runs to the end on the shared real data (the docs show what really runs)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.shared_data import shared_path

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "docs" / "tutorials").glob("*.py"))


@pytest.mark.parametrize("script", TUTORIALS, ids=[t.stem for t in TUTORIALS])
@pytest.mark.timeout(600)
def test_tutorial_runs(script, tmp_path):
    data = shared_path()
    result = subprocess.run(
        [sys.executable, str(script), str(data)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()
