"""The compiled head (edgefdfa/_head.c with the firmware's forward pass): an extension module that
edgefdfa/native.py loads. Optional: without a C compiler or Python's headers (Debian: python3-dev) the
install still succeeds and EdgeModel runs TFLite files on the interpreter alone."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "edgefdfa._head",
    sources=["edgefdfa/_head.c", "firmware_bridge/c/edgefdfa_head.c", "firmware_bridge/c/edgefdfa_learn.c"],
    include_dirs=["firmware_bridge/c"],
    # no -ffast-math-style flags, and no fused multiply-adds: the Pi computes what the firmware computes
    # (the C sums in index order; tools/bench_engine.py's floor row times the cost of that)
    extra_compile_args=["-O3", "-std=c11", "-ffp-contract=off"],
    libraries=["m"],  # expf, logf, tanhf
    optional=True,
)])
