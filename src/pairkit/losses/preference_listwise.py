"""pairkit.losses.preference_listwise (torch)."""

from __future__ import annotations

__all__: list[str] = []
