"""Benchmarks of rulechef-trace; run them from the repository root (``python -m benchmarks.…``)."""
