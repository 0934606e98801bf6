"""tank's version (one place, read by the packaging metadata and ``tank --version``)."""

__version__ = "0.2.0"
