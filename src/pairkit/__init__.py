"""pairkit: learning from comparisons.

Rate (``pairkit.rating``), select comparisons (``pairkit.select``, ``pairkit.judges``) and train
(``pairkit.losses``, ``pairkit.train``) from "A is better than B" signals. ``import pairkit`` needs only
numpy/scipy/pandas; torch is imported by the subpackages that need it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_LAZY = {
    "Comparisons": "pairkit.data",
    "Rankings": "pairkit.data",
    "read_comparisons": "pairkit.data",
    "Leaderboard": "pairkit.rating",
    "InputError": "pairkit.errors",
    "EstimationError": "pairkit.errors",
    "NoMLEError": "pairkit.errors",
    "NotIdentifiedError": "pairkit.errors",
    "ConvergenceError": "pairkit.errors",
    "MissingDependencyError": "pairkit.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    # Lazy so that `import pairkit.losses` does not pay for pandas, and `import pairkit` not for torch.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pairkit' has no attribute {name!r}")
