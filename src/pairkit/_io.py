"""Atomic file output: a file pairkit writes is either the old one or the complete new one, never a torn one.

Each writer writes to a temporary file in the target's directory (same file system, so the rename is atomic),
flushes and fsyncs it, then ``os.replace``-s it over the target. On any failure (an exception, disk full) the
temporary file is removed and the previous file is left as it was; a kill at any moment leaves at most a stray
``.name.*.tmp`` file next to it. Errors of the operating system are re-raised as :class:`OSError` naming the
path: ``cannot write out.json: No space left on device``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_directory", "atomic_path", "atomic_write_bytes", "atomic_write_text", "save_figure"]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without error, move it onto ``path``.

    For writers that want a file name (``savefig``, ``to_parquet``, ``save_pretrained`` of a single file).
    The yielded file exists (empty) and keeps ``path``'s suffix, so writers that infer the format from it work.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{target.suffix}")
    try:
        # O_EXCL: never reuse a file; 0o666 lets the umask decide the mode, as for a file opened with open().
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise _named(exc, target) from exc
    try:
        yield tmp
        _fsync_file(tmp)
        _keep_mode(target, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        _remove(tmp)
        raise _named(exc, target) from exc
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (temporary file, fsync, rename)."""
    atomic_write_bytes(path, text.encode(encoding))


def save_figure(fig, path: str | Path, *, dpi: int = 120) -> None:
    """``fig.savefig`` atomically, in the format the suffix names; the figure is closed either way."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".").lower() or None)
    finally:
        plt.close(fig)


def _named(exc: OSError, target: Path) -> OSError:
    """The same kind of error, saying which file could not be written (the temporary name would only confuse)."""
    named = type(exc)(f"cannot write {target}: {exc.strerror or exc}")
    named.errno = exc.errno  # a one-argument OSError prints just its message; the errno stays for callers
    return named


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; some file systems cannot fsync a directory, which is fine."""
    with contextlib.suppress(OSError):
        fd = os.open(directory if str(directory) else ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _keep_mode(target: Path, tmp: Path) -> None:
    """Overwriting keeps the old file's permissions (a new file got the umask's, like open())."""
    with contextlib.suppress(OSError):
        os.chmod(tmp, target.stat().st_mode & 0o7777)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a new temporary directory next to ``path``; when the block ends without error, it becomes ``path``.

    For ``save_pretrained`` of a model and its tokenizer. The files are fsynced, then the previous directory is
    renamed aside, the new one renamed into place and the previous one deleted: a kill while the files are
    written (the long part) leaves the previous directory untouched; a kill between the two renames (a few
    microseconds) leaves it complete under ``.name.*.old`` next to ``path``. On an error the temporary directory
    is removed and ``path`` is left as it was.
    """
    import shutil

    target = Path(path)
    token = f"{os.getpid()}.{secrets.token_hex(4)}"
    tmp = target.with_name(f".{target.name}.{token}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise _named(exc, target) from exc
    old = None
    try:
        yield tmp
        for item in sorted(tmp.rglob("*")):
            if item.is_file():
                _fsync_file(item)
        _fsync_dir(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.{token}.old")
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            if old is not None:
                os.replace(old, target)
                old = None
            raise
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _named(exc, target) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
