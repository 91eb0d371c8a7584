"""Facade: every configuration class of the package, each imported on first use (from its model family)."""

from ._auto import family_exports

__getattr__, __dir__, __all__ = family_exports(__name__, configurations=True)
