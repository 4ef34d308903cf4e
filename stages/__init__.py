"""Thin Click commands, one per pipeline stage (see dvc.yaml)."""
