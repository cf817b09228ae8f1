"""Benchmarks (not tests): each writes bench/results/<name>.json."""
