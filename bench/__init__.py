"""Benchmarks of a running node (see bench/README.md). Not part of the node or its tests."""
