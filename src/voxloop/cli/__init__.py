"""Command-line interface ``voxloop``."""
