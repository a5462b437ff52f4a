"""Smoke test of an installed wheel, run from an empty directory with no source tree on the path."""

import subprocess
import sys
from pathlib import Path

import pairkit

assert "site-packages" in pairkit.__file__, f"pairkit imported from the source tree: {pairkit.__file__}"
pairkit_cli = Path(sys.executable).with_name("pairkit")
subprocess.run([str(pairkit_cli), "--version"], check=True)
subprocess.run([str(pairkit_cli), "demo"], check=True)
assert Path("pairkit-demo.png").stat().st_size > 0
Path("games.csv").write_text("winner,loser\na,b\nb,c\nc,a\na,c\n")
subprocess.run([str(pairkit_cli), "rank", "games.csv", "--prior", "1", "--json", "board.json"], check=True)
assert Path("board.json").stat().st_size > 0
# Package data that an editable install would hide (templates, static files) must be inside the wheel.
root = Path(pairkit.__file__).parent
for pattern in ("arena/templates/*", "arena/static/*"):
    parent = root / pattern.split("/")[0]
    if parent.exists():
        assert list(root.glob(pattern)), f"{pattern} is missing from the wheel"
print("wheel smoke test passed")
