"""Benchmarks: regiondet models beside the peers a user could pick instead, and speed, as printed tables."""
