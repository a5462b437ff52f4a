"""``pandas``, imported on first use.

Modules on the path of ``pairkit rank`` (the readers, the comparison container, the leaderboard, the bootstrap and
count-file helpers) use pandas only in some of their functions (CSV, JSON and DataFrame input, ``to_pandas``).
Importing it costs ~0.5 s — as much as a whole sparse fit of 10⁵ comparisons — so they refer to it through
:data:`pandas`, which imports the real module when one of its attributes is first read.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["pandas", "scipy_sparse"]


class _Lazy:
    """A module imported when one of its attributes is first read."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


pandas = _Lazy("pandas")
"""The ``pandas`` module, imported when first used (``pandas.DataFrame`` is the real class)."""

scipy_sparse = _Lazy("scipy.sparse")
"""The ``scipy.sparse`` module, imported when first used (~0.3 s: `pairkit count` never needs it)."""
