"""The package version (single source, read by pyproject)."""

__version__ = "0.2.0"
