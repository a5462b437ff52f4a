"""pairkit.data.rankings: K-wise comparisons (rankings)."""

from __future__ import annotations

__all__: list[str] = []
