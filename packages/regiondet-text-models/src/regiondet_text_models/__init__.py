"""Weights of regiondet's shipped text detectors; regiondet.models.zoo finds them by name."""
