"""pairkit.losses.preference_unpaired (torch)."""

from __future__ import annotations

__all__: list[str] = []
