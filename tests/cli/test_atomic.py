"""Atomic outputs (issue 18, fault 3): a kill or a full disk while writing leaves the previous file whole.

The kill tests run the real CLI in a child process whose ``os.replace`` (the rename that publishes a finished
file) signals the parent and blocks; the parent kills the child with SIGKILL at that moment, when the new file
has been completely written to its temporary name, and checks that the old file is byte-for-byte intact.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pairkit._io import atomic_path, atomic_write_bytes, atomic_write_text
from pairkit.cli import app

runner = CliRunner()
OLD = b'{"previous": "good file"}\n'

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    marker = Path(sys.argv[1])

    def blocked_replace(src, dst, *args, **kwargs):
        marker.write_text(str(src))  # the new content is complete under its temporary name; now kill me
        time.sleep(600)

    os.replace = blocked_replace
    from pairkit.cli import app

    app(sys.argv[2:], prog_name="pairkit")
    """
)


def _games(tmp_path: Path) -> Path:
    path = tmp_path / "games.csv"
    path.write_text("winner,loser\na,b\nb,c\nc,a\na,c\nb,a\nc,b\n")
    return path


def _judge_args(tmp_path: Path, flag: str, out: Path) -> list[str]:
    cands = tmp_path / "c.jsonl"
    rows = [{"context_id": "q", "candidate_id": f"m{i}", "text": f"answer {i}"} for i in range(4)]
    cands.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    config = tmp_path / "judge.json"
    config.write_text(json.dumps({"type": "simulated", "strengths": {f"m{i}": float(i) for i in range(4)}}))
    return ["judge", str(cands), "--judge", str(config), "--strategy", "round_robin", flag, str(out)]


OUTPUTS = {
    "rank --json": lambda tmp, out: ["rank", str(_games(tmp)), "--prior", "1", "--json", str(out)],
    "rank --plot": lambda tmp, out: ["rank", str(_games(tmp)), "--prior", "1", "--plot", str(out)],
    "compare-models --json": lambda tmp, out: ["compare-models", str(_games(tmp)), "--folds", "2", "--models", "bt",
                                               "--json", str(out)],
    "simulate --json": lambda tmp, out: ["simulate", "--items", "4", "--strategy", "round_robin", "--json", str(out)],
    "compare-models --plot": lambda tmp, out: ["compare-models", str(_games(tmp)), "--folds", "2", "--models", "bt",
                                               "--plot", str(out)],
    "count --output": lambda tmp, out: ["count", str(_games(tmp)), "--engine", "memory", "--output", str(out)],
    "judge --judgments": lambda tmp, out: _judge_args(tmp, "--judgments", out),
    "judge --pairs": lambda tmp, out: _judge_args(tmp, "--pairs", out),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", sorted(OUTPUTS))
def test_kill_9_before_the_rename_leaves_the_previous_file_intact(tmp_path, command):
    out = tmp_path / ("board.png" if "plot" in command else "counts.csv" if "count" in command else "out.json")
    out.write_bytes(OLD)
    marker = tmp_path / "ready"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(marker), *OUTPUTS[command](tmp_path, out)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            if child.poll() is not None:
                pytest.fail(f"child ended before writing: {child.stdout.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "the child never reached the rename"
            time.sleep(0.05)
        tmp_file = Path(marker.read_text())
        assert tmp_file.parent == out.parent and tmp_file.stat().st_size > 0  # the new content was written...
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert out.read_bytes() == OLD  # ...but only next to the old file, which is whole


def test_atomic_write_replaces_and_keeps_the_mode(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_text(path, "one")
    assert path.read_text() == "one"
    os.chmod(path, 0o640)
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two" and (path.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_an_error_while_writing_removes_the_temporary_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "board.png"
    path.write_bytes(OLD)
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half a fi")
        raise RuntimeError("writer failed")
    assert path.read_bytes() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["board.png"]


def _disk_full(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_names_the_path(tmp_path, monkeypatch):
    path = tmp_path / "out.json"
    path.write_bytes(OLD)
    monkeypatch.setattr("pairkit._io.os.fsync", _disk_full)
    with pytest.raises(OSError, match=r"^cannot write .*out.json: No space left on device$") as info:
        atomic_write_text(path, "new")
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_rank_on_a_full_disk_exits_2_naming_the_output(tmp_path, monkeypatch):
    out = tmp_path / "out.json"
    out.write_bytes(OLD)
    monkeypatch.setattr("pairkit._io.os.fsync", _disk_full)
    result = runner.invoke(app, ["rank", str(_games(tmp_path)), "--prior", "1", "--json", str(out)])
    assert result.exit_code == 2, result.output
    assert f"error: cannot write {out}: No space left on device" in result.output.replace("\n", "")
    assert out.read_bytes() == OLD


def test_an_output_path_that_is_a_directory_or_has_no_parent(tmp_path):
    games = _games(tmp_path)
    for out, reason in ((tmp_path, "Is a directory"), (tmp_path / "missing" / "o.json", "No such file or directory")):
        result = runner.invoke(app, ["rank", str(games), "--prior", "1", "--json", str(out)])
        assert result.exit_code == 2, result.output
        assert f"cannot write {out}: {reason}" in result.output.replace("\n", "")


def test_leaderboard_outputs_are_written_atomically(tmp_path, monkeypatch):
    from pairkit.data import read_comparisons
    from pairkit.rating import fit_bradley_terry

    board = fit_bradley_terry(read_comparisons(_games(tmp_path)), prior=1.0)
    published = []
    real_replace = os.replace
    monkeypatch.setattr("pairkit._io.os.replace", lambda src, dst: (published.append(Path(dst)),
                                                                      real_replace(src, dst)))
    board.to_json(tmp_path / "b.json")
    board.plot(tmp_path / "b.svg")
    assert published == [tmp_path / "b.json", tmp_path / "b.svg"]
    assert json.loads((tmp_path / "b.json").read_text())["model"]
    assert (tmp_path / "b.svg").read_text().lstrip().startswith("<?xml")
