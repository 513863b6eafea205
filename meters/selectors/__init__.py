"""Reads of the meters app, one module per topic (pure period arithmetic: meters.periods)."""
