"""pairkit.select."""
