"""The compiled head (edgefdfa/_head.c with the firmware's forward pass): an extension module that
edgefdfa/native.py loads. Optional: without a C compiler or Python's headers (Debian: python3-dev) the
install still succeeds and EdgeModel runs TFLite files on the interpreter alone."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "edgefdfa._head",
    sources=["edgefdfa/_head.c", "firmware_bridge/c/edgefdfa_head.c", "firmware_bridge/c/edgefdfa_learn.c"],
    include_dirs=["firmware_bridge/c"],
    # reassociating the sums lets the compiler vectorize the dot products (the firmware loop is scalar)
    extra_compile_args=["-O3", "-std=c11", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"],
    libraries=["m"],  # expf, logf, tanhf
    optional=True,
)])
