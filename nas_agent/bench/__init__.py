"""Tabular benchmarks of a space (build once, replay strategies against lookups)."""
