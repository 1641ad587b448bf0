"""Thin adapters: one per dvc stage or CLI command; they parse arguments and do I/O only."""
