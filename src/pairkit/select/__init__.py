"""pairkit.select: comparison-efficient selection strategies over a comparator, and simulation."""

from pairkit.select.arena import *  # noqa: F403
from pairkit.select.simulate import *  # noqa: F403
from pairkit.select.strategies import *  # noqa: F403
