"""Throughput and latency benchmarks. Not built yet."""
