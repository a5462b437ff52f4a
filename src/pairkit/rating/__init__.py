"""Rating models: every model returns a :class:`Leaderboard`."""

from pairkit.rating.bayeselo import *  # noqa: F403
from pairkit.rating.bootstrap import *  # noqa: F403
from pairkit.rating.bradley_terry import *  # noqa: F403
from pairkit.rating.counting import *  # noqa: F403
from pairkit.rating.covariates import *  # noqa: F403
from pairkit.rating.elo import *  # noqa: F403
from pairkit.rating.intransitive import *  # noqa: F403
from pairkit.rating.leaderboard import ELO_FACTOR, Leaderboard
from pairkit.rating.model_selection import *  # noqa: F403
from pairkit.rating.order import *  # noqa: F403
from pairkit.rating.plackett_luce import *  # noqa: F403
from pairkit.rating.registry import *  # noqa: F403
from pairkit.rating.robust import *  # noqa: F403
from pairkit.rating.spectral import *  # noqa: F403
from pairkit.rating.ties import *  # noqa: F403
from pairkit.rating.trueskill import *  # noqa: F403
from pairkit.rating.weng_lin import *  # noqa: F403

__all__ = ["ELO_FACTOR", "Leaderboard"]
