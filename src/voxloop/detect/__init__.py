"""Detect surges with their root cause and group voices into problems."""
