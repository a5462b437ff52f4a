"""pairkit.losses.diagnostics (torch)."""

from __future__ import annotations

__all__: list[str] = []
