"""What an interpreter backend provides: run a model file's bytes on one input, return its output.

Every backend module (onnx.py, tflite.py) provides a class `Session(model: bytes, threads: int = 1,
name: str = "model")` with:

    input: TensorInfo        the (single) input the model declares
    output: TensorInfo       its first output
    run(x: np.ndarray) -> np.ndarray
        x shaped like the declared input (batch dimension included; a dynamic batch takes x as given),
        cast to the input dtype; returns the first output as a new float32 array. A wrong shape is a
        BadModelError naming the expected and the given shape, never a crash in the interpreter.

and a class `InferenceSession(model: bytes, threads: int = 1, name: str = "model")` for a format's
`inference_model` file (inputs: the model input, then the head's W0, b0, W1, b1...; outputs: the
model output, then the head's input unless the head starts at the model input), with:

    input: TensorInfo; outputs: list[TensorInfo]
    set_weights(arrays: list[np.ndarray]) -> None
        the head's [W0, b0, W1, b1...] (W (n_out, n_in) C-contiguous float32, b (n_out,)) for the runs
        that follow. onnxruntime binds them and reads them in place at every run (giving the same
        arrays again costs nothing); TFLite copies them in, so call it again after they change.
    run(x: np.ndarray, n: int | None = None) -> list[np.ndarray]
        the first n outputs (all by default) for x, as new flat arrays, in one interpreter call. The
        fast path: the caller has checked x's shape (batch dimension included; a dynamic dimension
        reallocates); x is copied into a buffer bound once and the outputs copied out of theirs.

and a module-level `NAME` ("onnxruntime" / "litert" / "tflite_runtime" / "tensorflow") saying which
interpreter ran. Threads are set explicitly (Pi-class devices have few, slow cores).
"""
