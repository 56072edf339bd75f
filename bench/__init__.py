"""Benchmarks (`make bench`): not part of the product; never imported by it."""
