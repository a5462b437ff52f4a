"""Rating models: every model returns a :class:`Leaderboard`."""

from pairkit.rating.bootstrap import *  # noqa: F403
from pairkit.rating.bradley_terry import *  # noqa: F403
from pairkit.rating.elo import *  # noqa: F403
from pairkit.rating.leaderboard import ELO_FACTOR, Leaderboard

__all__ = ["ELO_FACTOR", "Leaderboard"]
