"""Collect every customer voice: files, HTTP push; lose nothing."""
