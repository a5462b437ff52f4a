"""The registry of curation rules: acquisition functions, dueling bandits, reweighting, sampling, construction."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pairkit._spec import Interval, Option, Registry, Spec, declare_options
from pairkit.errors import InputError

__all__ = ["RULES", "as_points", "check_comparisons", "get", "names", "rule", "spec"]

POSITIVE = Interval(0, None, closed="neither")
AT_LEAST_1 = Interval(1, None)

RULES = Registry("curation rule")
"""Curation rules by name: each a :class:`~pairkit._spec.Spec` with its family and declared options."""

FAMILIES = ("acquisition", "bandit", "reweighting", "sampling", "construction")


def rule(name: str, family: str, *options: Option, data: str = "", aliases: tuple[str, ...] = ()):
    """Register ``fn`` under ``name`` in ``family`` with its declared (checked) keyword options."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")

    def register(fn: Callable) -> Callable:
        checked = declare_options(*options)(fn)
        RULES.add(Spec(name, checked, kind="curation rule", data=data, family=family, aliases=aliases))
        return checked

    return register


def get(name: str) -> Callable:
    """The rule registered under ``name`` (or an alias), options checked on every call."""
    return RULES.get(name).fn


def spec(name: str) -> Spec:
    """The :class:`~pairkit._spec.Spec` of a rule: family, options with ranges, aliases, paper (docstring)."""
    return RULES.get(name)


def names(family: str | None = None, *, aliases: bool = False) -> list[str]:
    """Registered rule names (of one ``family``: acquisition, bandit, reweighting, sampling, construction)."""
    return RULES.names(family=family, aliases=aliases)


def as_array(x, name: str, ndim: int | None = None) -> np.ndarray:
    """``x`` (array, list or torch tensor) as a float array; a wrong rank or a NaN/inf raises naming ``name``."""
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=float)
    if ndim is not None and a.ndim != ndim:
        raise InputError(f"{name} must be a {ndim}-d array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise InputError(f"{name}{list(bad)} is {a[tuple(bad)]!r}; every value must be finite")
    return a


def as_rng(seed) -> np.random.Generator:
    """A generator from a seed (or the generator itself)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def as_points(x, what: str) -> np.ndarray:
    """``x`` as a finite ``[n, d]`` float array (a 1-d array is ``n`` points in one dimension)."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise InputError(f"{what} must be a finite [n, d] array, got shape {x.shape}")
    return x


def check_comparisons(comparisons, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Winner and loser indices ``[m]`` of ``comparisons`` ``[m, 2]`` into ``n`` points (checked)."""
    comp = np.asarray(comparisons)
    if comp.ndim != 2 or comp.shape[1] != 2 or len(comp) == 0:
        raise InputError(f"comparisons must be an [m, 2] array of (winner, loser) indices, got shape {comp.shape}")
    if not np.issubdtype(comp.dtype, np.integer) or comp.min() < 0 or comp.max() >= n:
        raise InputError(f"comparisons must hold integer indices into x (0..{n - 1})")
    if np.any(comp[:, 0] == comp[:, 1]):
        row = int(np.flatnonzero(comp[:, 0] == comp[:, 1])[0]) + 1
        raise InputError(f"comparisons, row {row}: a point compared with itself")
    return comp[:, 0].astype(int), comp[:, 1].astype(int)
