"""Stepper drivers, ramps and one controller per motor."""
