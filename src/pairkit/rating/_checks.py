"""Checks shared by every rating fit: the common options (declared once, with their ranges), the data check,
renamed options, and item lists in error messages.

Every ``fit_*`` has the shape ``fit_x(data, *, <model options>, prior, intervals, level, tol, max_iter)`` (the
common options it has a use for); the common options are the :class:`~pairkit._spec.Option` objects below, so
their names, ranges and messages are the same for every model.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import numpy as np

from pairkit._spec import Interval, Option
from pairkit.data.comparisons import Comparisons
from pairkit.errors import InputError

__all__ = [
    "BY",
    "LEVEL",
    "MAX_ITER",
    "N_BOOT",
    "PRIOR",
    "TOL",
    "check_comparisons",
    "intervals_option",
    "item_names",
    "renamed_options",
]

PRIOR = Option("prior", float, Interval(0, None), doc="virtual wins and losses of each item against an average one")
LEVEL = Option("level", float, Interval(0, 1, closed="neither"), doc="coverage of the intervals")
TOL = Option("tol", float, Interval(0, None, closed="neither"), doc="convergence tolerance of the iterations")
MAX_ITER = Option("max_iter", int, Interval(1, None), doc="the most iterations of the fitting loop")
N_BOOT = Option("n_boot", int, Interval(2, None), doc="bootstrap replicates")
BY = Option("by", str, choices=("row", "cluster"), doc="what a bootstrap resamples: rows or clusters")


def intervals_option(*choices: str) -> Option:
    """The ``intervals`` option with the methods a model offers (``"auto"`` picks one; ``"none"`` skips them)."""
    return Option("intervals", str, choices=tuple(choices), doc="how the intervals are computed")


def check_comparisons(data: object, model: str) -> Comparisons:
    """``data`` as non-empty :class:`Comparisons` (the one data check of every comparisons model)."""
    if not isinstance(data, Comparisons):
        raise InputError(f"{model}: expected Comparisons, got {type(data).__name__}")
    if len(data) == 0:
        raise InputError(f"{model}: no comparisons to fit (the data are empty)")
    return data


def item_names(items: tuple[str, ...], idx: np.ndarray, limit: int = 8) -> str:
    """Up to ``limit`` item names for an error message, ``{'a', 'b' and 3 more}``."""
    shown = ", ".join(repr(items[k]) for k in idx[:limit])
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return f"{{{shown}{more}}}"


def renamed_options(**old_to_new: str) -> Callable[[Callable], Callable]:
    """Accept an option's old name with a :class:`DeprecationWarning` (``max_em=`` → ``max_iter=``)."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise InputError(f"{fn.__name__}: give {new}= only ({old}= is its old name)")
                    warnings.warn(f"{fn.__name__}: {old}= is deprecated; use {new}=", DeprecationWarning,
                                  stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate
