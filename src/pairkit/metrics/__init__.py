"""pairkit.metrics: ranking, agreement and calibration metrics (numpy)."""

from pairkit.metrics.ranking import *  # noqa: F403
