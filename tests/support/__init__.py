"""Test support: databases, nodes in-process and as real processes."""
