"""Which TFLite interpreter runs: LiteRT first, then tflite-runtime, then TensorFlow; EDGEFDFA_TFLITE
forces one. CI's second leg (numpy<2, tflite-runtime, no LiteRT) runs this tier with it set."""

import os

import numpy as np

from edgefdfa.backends import tflite as backend
from edgefdfa.formats import tflite as fmt


def test_the_interpreter_asked_for_is_the_one_that_runs():
    wanted = os.environ.get("EDGEFDFA_TFLITE")
    assert backend.NAME == (wanted or "litert")
    W, b = np.eye(3, dtype=np.float32) * 2, np.ones(3, np.float32)
    session = backend.Session(fmt.dense_model([(W, b, "identity")], softmax=False))
    assert np.allclose(session.run(np.array([[1, 2, 3]], np.float32)), [[3, 5, 7]])
