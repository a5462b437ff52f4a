"""pairkit.train."""
