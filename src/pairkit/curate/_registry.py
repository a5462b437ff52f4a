"""The registry of curation rules: acquisition functions, dueling bandits, reweighting, sampling, construction."""

from __future__ import annotations

from collections.abc import Callable

from pairkit._spec import Option, Registry, Spec, declare_options

__all__ = ["RULES", "get", "names", "rule", "spec"]

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
