"""DiGA: distil to generalise, then adapt -- a reproducible re-implementation."""

__version__ = "0.1.0"
