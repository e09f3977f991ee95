"""voxloop: collect, understand, detect, analyze and act on every customer voice."""

__version__ = "0.1.0"
