"""Benchmarks that print figures (timing goals live here, not in tests)."""
