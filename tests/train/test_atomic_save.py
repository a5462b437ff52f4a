"""The final model directory is replaced atomically: a kill or an error mid-save leaves the previous one intact."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pairkit._io import atomic_directory


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_atomic_directory_replaces_the_previous_one_and_leaves_nothing_behind(tmp_path):
    final = tmp_path / "final"
    for version in (b"v1", b"v2"):
        with atomic_directory(final) as tmp:
            (tmp / "weights.bin").write_bytes(version)
            (tmp / "sub").mkdir()
            (tmp / "sub" / "tokenizer.json").write_bytes(version * 3)
    assert _tree(final) == {"weights.bin": b"v2", "sub/tokenizer.json": b"v2v2v2"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_an_error_mid_save_leaves_the_previous_directory_and_removes_the_partial_one(tmp_path):
    final = tmp_path / "final"
    with atomic_directory(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"good")
    with pytest.raises(KeyboardInterrupt), atomic_directory(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"half")
        raise KeyboardInterrupt
    assert _tree(final) == {"weights.bin": b"good"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_a_kill_mid_save_leaves_the_previous_directory_intact(tmp_path):
    final = tmp_path / "final"
    with atomic_directory(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"good")
    code = textwrap.dedent(f"""
        import os, signal
        from pairkit._io import atomic_directory
        with atomic_directory({str(final)!r}) as tmp:
            (tmp / "weights.bin").write_bytes(b"torn")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -9
    assert _tree(final) == {"weights.bin": b"good"}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the stray partial copy, not final


def test_cli_final_save_is_atomic(tmp_path, tiny_lm, monkeypatch):
    from pairkit.cli.train import _finish

    model, tokenizer = tiny_lm
    result = type("R", (), {"history": [{"loss": 0.5}], "step": 1})()
    _finish(model, tokenizer, result, tmp_path)
    before = _tree(tmp_path / "final")

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # the model's weights are written, the tokenizer's are not

    monkeypatch.setattr(tokenizer, "save_pretrained", dies)
    with pytest.raises(KeyboardInterrupt):
        _finish(model, tokenizer, result, tmp_path)
    assert _tree(tmp_path / "final") == before and "model.safetensors" in before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
