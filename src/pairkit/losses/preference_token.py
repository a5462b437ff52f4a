"""pairkit.losses.preference_token (torch)."""

from __future__ import annotations

__all__: list[str] = []
