"""Benchmarks: scripts that start what they measure, print a table and write JSON results."""
