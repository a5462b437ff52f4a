"""pairkit.select: comparison-efficient selection strategies over a comparator, and simulation."""

from pairkit.select.arena import POLICIES, Arena, Pool, Record, Selection, apply_length_rule, position_stats
from pairkit.select.simulate import simulate
from pairkit.select.strategies import (
    STRATEGIES,
    aselect,
    beam_merge,
    default_active_limit,
    default_random_pairs,
    dry_run,
    select,
)

__all__ = [
    "Arena",
    "POLICIES",
    "Pool",
    "Record",
    "STRATEGIES",
    "Selection",
    "apply_length_rule",
    "aselect",
    "beam_merge",
    "default_active_limit",
    "default_random_pairs",
    "dry_run",
    "position_stats",
    "select",
    "simulate",
]
