"""pairkit.judges."""
