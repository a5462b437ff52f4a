"""Errors and warnings raised by pairkit.

Bad input raises :class:`InputError` (a ``ValueError``) whose message names the source, the row
(1-based; in CSV files the header is row 1), the column and the offending value, and says how to fix it.
Numerical failures (no maximum-likelihood estimate, no convergence) raise :class:`EstimationError`
subclasses that name the items or components involved. Library code never prints; it warns with a
:class:`PairkitWarning` subclass.
"""

from __future__ import annotations


class PairkitError(Exception):
    """Base class of every pairkit exception."""


class InputError(PairkitError, ValueError):
    """Input data or arguments that pairkit cannot use as given."""


class EstimationError(PairkitError, RuntimeError):
    """A model cannot be estimated from the data given."""


class NoMLEError(EstimationError):
    """The maximum-likelihood estimate does not exist (e.g. an item never lost)."""


class NotIdentifiedError(NoMLEError):
    """The likelihood is flat along some direction: a reported parameter cannot be separated from others.

    The message names the parameters/items that move together along the flat direction, says why, and how to
    fix it (more varied data, a fixed value, a prior)."""


class MissingDependencyError(PairkitError, ImportError):
    """An optional package is not installed; the message names the ``pairkit[extra]`` that installs it."""

    def __init__(self, message: str, *, name: str | None = None, extra: str | None = None) -> None:
        super().__init__(message, name=name)
        self.extra = extra


class ConvergenceError(EstimationError):
    """An iterative procedure did not reach its tolerance."""


class PairkitWarning(UserWarning):
    """Base class of pairkit warnings."""


class IntervalWarning(PairkitWarning):
    """Intervals were changed from the method asked for because it would be too narrow (sparse items, few
    clusters) or an item's interval reflects only the prior."""


class DroppedRowsWarning(PairkitWarning):
    """Rows were dropped because the caller asked for invalid rows to be dropped."""

