"""Benchmarks: ``python -m benchmarks [AREA…]`` runs them and prints one table per area."""
