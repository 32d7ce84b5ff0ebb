"""Benchmarks beside a torch baseline, their SQLite history, the regression check and the dashboard (docs/PERF.md)."""
