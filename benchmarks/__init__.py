"""Benchmark scripts that print tables; run from the repository root as `python -m benchmarks.NAME`."""
