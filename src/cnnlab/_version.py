"""The package version, in a module of its own so any module can import it without
importing the package root (which imports everything)."""

__version__ = "0.3.0"
