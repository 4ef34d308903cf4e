"""Maintenance commands for the pipeline's DVC files (``make deps``, ``make prune-lock``)."""
