"""``pairkit rank`` on a Parquet file imports only what the fit needs: no pandas, no graph or iterative solvers,
no other command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_SCRIPT = """
import json, sys
sys.argv = ["pairkit", "rank", sys.argv[1], "--prior", "1", "--json", sys.argv[2]]
from pairkit.cli import main
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
watched = ("pandas", "scipy.linalg", "scipy.sparse.csgraph", "scipy.sparse.linalg", "pyarrow.dataset",
           "pairkit.cli.train", "pairkit.cli.arena", "pairkit.data.rankings")
print(json.dumps({name: name in sys.modules for name in watched}))
"""


def test_pairkit_rank_on_parquet_does_not_import_pandas(tmp_path):
    rng = np.random.default_rng(0)
    n, m = 50, 2_000
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    names = np.array([f"item {k:03d}" for k in range(n)], dtype=object)
    labels = np.array(["model_a", "model_b", "tie"], dtype=object)[rng.integers(0, 3, m)]
    path = tmp_path / "arena.parquet"
    pq.write_table(pa.table({"model_a": names[a], "model_b": names[b], "winner": labels}), path)
    out = tmp_path / "board.json"
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(path), str(out)], capture_output=True, text=True,
                          check=True)
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == {"pandas": False, "scipy.linalg": True, "scipy.sparse.csgraph": False,
                      "scipy.sparse.linalg": False, "pyarrow.dataset": False,  # the other commands, data modules:
                      "pairkit.cli.train": False, "pairkit.cli.arena": False, "pairkit.data.rankings": False}
    board = json.loads(out.read_text())
    assert len(board["items"]) == n and board["n_comparisons"] == m
    # the same board as from the pandas reader (a CSV file of the same rows)
    csv = tmp_path / "arena.csv"
    csv.write_text("model_a,model_b,winner\n" + "".join(f"{x},{y},{z}\n" for x, y, z in
                                                        zip(names[a], names[b], labels)))
    from typer.testing import CliRunner

    from pairkit.cli import app

    out_csv = tmp_path / "board_csv.json"
    result = CliRunner().invoke(app, ["rank", str(csv), "--prior", "1", "--json", str(out_csv)])
    assert result.exit_code == 0, result.output
    assert json.loads(out_csv.read_text())["items"] == board["items"]
