"""edgefdfa: on-device learning for Raspberry Pi-class edge devices.

    >>> import edgefdfa
    >>> learner = edgefdfa.MLP([64, 128, 128, 10], rule="fdfa", loss="ce", seed=0)
    >>> learner.learn_one(x, y); learner.predict_one(x)
    >>> model = edgefdfa.load("model.onnx")   # frozen backbone + trainable dense head

The engine's names are imported on first use (PEP 562), so that `import edgefdfa.head`, the
vocabulary firmware_bridge shares, does not load the engine, NumPy's BLAS or the interpreters.
"""

import importlib

from .errors import (BadModelError, BadSampleError, CheckpointError, ConfigError, DivergedError, EdgeFDFAError,
                     SourceError)

__version__ = "0.1.0"

_LAZY = {"MLP": "learner", "Learner": "learner", "LearnerConfig": "learner", "RULES": "rules",
         "EdgeModel": "model", "load": "model", "load_checkpoint": "model"}  # name -> the module defining it

__all__ = [
    "MLP", "Learner", "LearnerConfig", "RULES", "load", "load_checkpoint", "EdgeModel",
    "EdgeFDFAError", "ConfigError", "BadSampleError", "CheckpointError", "BadModelError", "SourceError",
    "DivergedError",
]


def __getattr__(name: str):
    """One of the engine's names, imported from its module the first time it is asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module 'edgefdfa' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value
