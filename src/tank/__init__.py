"""tank: fast, verified container-image pulls."""

__version__ = "0.1.0"
