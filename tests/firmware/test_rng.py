"""The device's perturbation generator (firmware_bridge/c/edgefdfa_rng.c), compiled with the system C
compiler, and its Python twin (firmware_bridge/rng.py) give the same bits from the same seed, and the
draws have zero mean and unit variance."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.rng import Rng

ROOT = Path(__file__).resolve().parents[2]
C_DIR = ROOT / "firmware_bridge" / "c"
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-pedantic"]

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (apt-get install gcc)")


@pytest.fixture(scope="module")
def draws(tmp_path_factory):
    """draws(seed, n) -> (n normal draws, the next 32-bit word) from the compiled generator."""
    exe = tmp_path_factory.mktemp("rng") / "rng"
    subprocess.run(["cc", *CFLAGS, f"-I{C_DIR}", str(Path(__file__).with_name("rng_main.c")),
                    str(C_DIR / "edgefdfa_rng.c"), "-o", str(exe)], check=True)

    def run(seed: int, n: int) -> tuple[np.ndarray, int]:
        out = subprocess.run([str(exe), str(seed), str(n)], capture_output=True, check=True).stdout
        return np.frombuffer(out[:-4], "<f4"), int.from_bytes(out[-4:], "little")

    return run


def test_xoshiro128starstar_from_the_published_definition():
    """From the state (1, 2, 3, 4), worked by hand from Blackman & Vigna's definition: 11520, then 0."""
    rng = Rng(0)
    rng.state = [1, 2, 3, 4]
    assert rng.next() == 11520
    assert rng.state == [7, 0, 1026, 12288]
    assert rng.next() == 0


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 - 1])
def test_c_and_python_give_the_same_bits(draws, seed):
    c, last = draws(seed, 5000)
    rng = Rng(seed)
    python = rng.normals(5000)
    assert python.dtype == np.float32
    assert c.tobytes() == python.tobytes()
    assert last == rng.next()


def test_zero_mean_unit_variance_bounded(draws):
    u, _ = draws(7, 1_000_000)
    # standard errors at n = 1e6: 1e-3 for the mean, ~1.3e-3 for the variance (kurtosis 2.7); 5 of them
    assert abs(u.mean()) < 5e-3
    assert abs(u.var() - 1.0) < 7e-3
    assert np.abs(u).max() <= np.sqrt(12)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5e-3  # successive draws uncorrelated
    assert len(np.unique(u[:1000])) > 990


def test_seeds_give_different_streams(draws):
    assert draws(1, 64)[0].tobytes() != draws(2, 64)[0].tobytes()


def test_a_seed_outside_32_bits_is_refused():
    with pytest.raises(ValueError, match="32-bit"):
        Rng(2**32)
