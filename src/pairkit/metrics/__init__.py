"""pairkit.metrics."""
