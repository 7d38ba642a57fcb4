"""What an interpreter backend provides: run a model file's bytes on one input, return its output.

Every backend module (onnx.py, tflite.py) provides a class `Session(model: bytes, threads: int = 1,
name: str = "model")` with:

    input: TensorInfo        the (single) input the model declares
    output: TensorInfo       its first output
    run(x: np.ndarray) -> np.ndarray
        x shaped like the declared input (batch dimension included; a dynamic batch takes x as given),
        cast to the input dtype; returns the first output as a new float32 array. A wrong shape is a
        BadModelError naming the expected and the given shape, never a crash in the interpreter.

and a module-level `NAME` ("onnxruntime" / "litert" / "tflite_runtime" / "tensorflow") saying which
interpreter ran. Threads are set explicitly (Pi-class devices have few, slow cores).
"""
