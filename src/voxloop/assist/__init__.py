"""Assist agents and inspect conversation quality."""
