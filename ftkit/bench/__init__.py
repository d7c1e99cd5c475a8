"""Benchmarks behind `ftkit bench`: figures printed side by side from one run, never timed tests."""
