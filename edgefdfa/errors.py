"""One error hierarchy for the whole project, raised at its boundaries.

Every error a user can provoke (a bad sample, a bad file, a bad setting) is an `EdgeFDFAError`;
each child also subclasses the built-in error a NumPy user would expect, so `except ValueError`
keeps working.
"""

from __future__ import annotations


class EdgeFDFAError(Exception):
    """Base of every error edgefdfa raises on purpose."""


class ConfigError(EdgeFDFAError, ValueError):
    """A setting is unknown or out of range (rule name, learning rate, layer sizes...)."""


class BadSampleError(EdgeFDFAError, ValueError):
    """An input or label cannot be learned from: wrong shape or dtype, NaN/Inf, label out of range."""


class CheckpointError(EdgeFDFAError, OSError):
    """A checkpoint file is missing, truncated, of another format or version, or does not match."""


class BadModelError(EdgeFDFAError, ValueError):
    """A model file cannot be loaded, split or exported."""


class SourceError(EdgeFDFAError, OSError):
    """A data source cannot be opened or was lost (missing file, absent serial port, wrong arrays)."""


class DivergedError(EdgeFDFAError, ArithmeticError):
    """A learning step would have left a non-finite weight, bias, feedback or optimiser value; it was
    not applied, and the learner is exactly as it was before it."""
