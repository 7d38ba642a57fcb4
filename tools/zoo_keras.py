"""The Keras half of the zoo (tools/make_zoo.py runs it inside its own TensorFlow venv): small Keras nets
trained briefly on the shipped data, converted by TensorFlow's own TFLite converter in several forms, and
the int8 IMU model rebuilt from the shipped float weights. Reads the data and writes the files where
make_zoo.py says; imports nothing from edgefdfa (the venv does not have it).

  python zoo_keras.py DATA.npz OUT_DIR MODELS_OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

SEED = 0
CALIBRATION = 200  # representative samples drawn from the training split


def train(build, X: np.ndarray, y: np.ndarray, loss: str, epochs: int) -> keras.Model:
    """build() seeded, then a brief fit (Adam 1e-2, batch 32): outputs that mean something, not a benchmark."""
    keras.utils.set_random_seed(SEED)
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    model.fit(X, y, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    return model


def representative(X: np.ndarray):
    """The converter's calibration generator: CALIBRATION real training inputs, one at a time."""
    rows = np.random.default_rng(SEED).choice(len(X), size=min(CALIBRATION, len(X)), replace=False)

    def gen():
        for i in rows:
            yield [X[i:i + 1].astype(np.float32)]
    return gen


def convert(model: keras.Model, form: str, X_cal: np.ndarray) -> bytes:
    """One Keras model in one TFLite form, with the converter's own options for that form."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if form == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif form == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif form in ("int8", "int8-io"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative(X_cal)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if form == "int8-io":
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    elif form != "float32":
        raise ValueError(form)
    return conv.convert()


def digits_mlp() -> keras.Model:
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")], name="digits_mlp")


def digits_conv2d() -> keras.Model:
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")], name="digits_conv2d")


def imu_conv1d(X: np.ndarray) -> keras.Model:
    """Normalization (adapted on the training windows) -> Conv1D x2 -> pooling -> dense 64 relu -> 4 softmax
    (24x64 = 1536 weights: enough for the dynamic-range converter, which skips tensors under 1024, to quantize it)."""
    norm = keras.layers.Normalization(axis=-1)
    norm.adapt(X)
    return keras.Sequential([keras.Input((32, 6)), norm, keras.layers.Conv1D(12, 5, activation="relu"),
                             keras.layers.MaxPooling1D(2), keras.layers.Conv1D(24, 3, activation="relu"),
                             keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(4, activation="softmax")], name="imu_conv1d")


def digits_wide_mlp() -> keras.Model:
    """64-128 relu -> 128-10 softmax: both layers have >= 1024 weights, so dynamic range quantizes the whole head."""
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")], name="digits_wide_mlp")


def digits_gap_head() -> keras.Model:
    """A conv backbone with a one-layer head: GlobalAveragePooling2D then a single Dense+softmax."""
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(16, 3, activation="relu"),
                             keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, activation="softmax")],
                            name="digits_gap_head")


def digits_regression() -> keras.Model:
    """One linear output trained with mse on the digit's value / 9: a degenerate (width-1) head."""
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(1)], name="digits_regression")


class ImuFeatures(keras.layers.Layer):
    """The shipped IMU backbone: per-channel mean, std, min, max of a (32, 6) window, standardised. Arranged
    for int8 (the same values in exact arithmetic): deviations are scaled per channel to about [-1, 1] before
    squaring, and each feature group is standardised before the concatenation, so that the per-tensor int8
    scales are not set by the largest channel alone."""

    def __init__(self, mu: np.ndarray, inv_sd: np.ndarray, dev_scale: np.ndarray, **kw):
        super().__init__(**kw)
        n = len(dev_scale)
        mu, inv_sd = mu.reshape(4, 1, n), inv_sd.reshape(4, 1, n)
        mu[1], inv_sd[1] = mu[1] * dev_scale, inv_sd[1] / dev_scale  # the std group is computed scaled
        self.mu = [keras.ops.convert_to_tensor(m) for m in mu]
        self.inv_sd = [keras.ops.convert_to_tensor(s) for s in inv_sd]
        self.dev_scale = keras.ops.convert_to_tensor(dev_scale[None, None, :])

    def call(self, x):
        mean = keras.ops.mean(x, axis=1, keepdims=True)
        dev = (x - mean) * self.dev_scale
        groups = [keras.ops.squeeze(mean, 1), keras.ops.sqrt(keras.ops.mean(dev * dev, axis=1)),
                  keras.ops.min(x, axis=1), keras.ops.max(x, axis=1)]
        return keras.ops.concatenate([(g - m) * s for g, m, s in zip(groups, self.mu, self.inv_sd)], axis=1)


def imu_int8(d: dict) -> tuple[bytes, bytes]:
    """The shipped imu-activity model with its own weights (read from the .onnx by make_zoo.py): full-integer
    int8 with float input and output, calibrated on training windows; and the same Keras model in float32,
    which make_zoo.py checks against the shipped float file."""
    inp = keras.Input((32, 6), name="window")
    X = d["imu_X_train"]
    dev_scale = (1.0 / np.abs(X - X.mean(axis=1, keepdims=True)).max(axis=(0, 1))).astype(np.float32)
    h = ImuFeatures(d["imu_mu"].copy(), d["imu_inv_sd"].copy(), dev_scale)(inp)
    h = keras.layers.Dense(32, activation="relu", name="fc0")(h)
    out = keras.layers.Dense(4, activation="softmax", name="fc1")(h)
    model = keras.Model(inp, out, name="imu_activity_int8")
    model.get_layer("fc0").set_weights([d["imu_fc0_W"].T, d["imu_fc0_b"]])
    model.get_layer("fc1").set_weights([d["imu_fc1_W"].T, d["imu_fc1_b"]])
    return convert(model, "int8", X), convert(model, "float32", X)


def main(data_path: str, out_dir: str, models_dir: str) -> None:
    d = dict(np.load(data_path))
    out, models_out = Path(out_dir), Path(models_dir)
    Xd, yd = d["digits_X_train"], d["digits_y_train"]
    Xd_img = Xd.reshape(-1, 8, 8, 1)
    Xi, yi = d["imu_X_train"], d["imu_y_train"]
    made = {}

    nets = [("keras-digits-mlp", train(digits_mlp, Xd, yd, "sparse_categorical_crossentropy", 20), Xd),
            ("keras-digits-conv2d", train(digits_conv2d, Xd_img, yd, "sparse_categorical_crossentropy", 15), Xd_img),
            ("keras-imu-conv1d", train(lambda: imu_conv1d(Xi), Xi, yi, "sparse_categorical_crossentropy", 30), Xi)]
    for stem, model, X in nets:
        for form in ("float32", "int8", "int8-io", "dynamic", "float16"):
            made[f"{stem}-{form}.tflite"] = convert(model, form, X)
    wide = train(digits_wide_mlp, Xd, yd, "sparse_categorical_crossentropy", 20)
    made["keras-digits-wide-mlp-dynamic.tflite"] = convert(wide, "dynamic", Xd)
    head1 = train(digits_gap_head, Xd_img, yd, "sparse_categorical_crossentropy", 30)
    reg = train(digits_regression, Xd, (yd / 9.0).astype(np.float32), "mse", 30)
    for form in ("float32", "int8"):
        made[f"keras-digits-gap-head-{form}.tflite"] = convert(head1, form, Xd_img)
        made[f"keras-digits-regression-{form}.tflite"] = convert(reg, form, Xd)
    for name, data in made.items():
        (out / name).write_bytes(data)
    int8, float32 = imu_int8(d)
    (models_out / "imu-activity-int8.tflite").write_bytes(int8)
    (Path(data_path).parent / "imu-activity-keras-float32.tflite").write_bytes(float32)
    versions = {"tensorflow-cpu": tf.__version__, "keras": keras.__version__}
    (out / "keras_versions.json").write_text(json.dumps(versions))
    print(f"keras: wrote {len(made)} zoo files and imu-activity-int8.tflite with {versions}")


if __name__ == "__main__":
    main(*sys.argv[1:])
