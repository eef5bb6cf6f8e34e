"""Processing algorithms of the SlimDiffSR provider."""

from .superresolve import SuperResolveAlgorithm

__all__ = ["SuperResolveAlgorithm"]
