"""Benchmarks: measured as ratios within one run, recorded in BENCHMARKS.md, never asserted."""
