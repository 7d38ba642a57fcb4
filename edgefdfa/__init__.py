"""edgefdfa: on-device learning for Raspberry Pi-class edge devices.

    >>> import edgefdfa
    >>> learner = edgefdfa.MLP([64, 128, 128, 10], rule="fdfa", loss="ce", seed=0)
    >>> learner.learn_one(x, y); learner.predict_one(x)
    >>> model = edgefdfa.load("model.onnx")   # frozen backbone + trainable dense head
"""

from .errors import (BadModelError, BadSampleError, CheckpointError, ConfigError, DivergedError, EdgeFDFAError,
                     SourceError)
from .learner import MLP, Learner, LearnerConfig
from .model import EdgeModel, load, load_checkpoint
from .rules import RULES

__version__ = "0.1.0"

__all__ = [
    "MLP", "Learner", "LearnerConfig", "RULES", "load", "load_checkpoint", "EdgeModel",
    "EdgeFDFAError", "ConfigError", "BadSampleError", "CheckpointError", "BadModelError", "SourceError",
    "DivergedError",
]
