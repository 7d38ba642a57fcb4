"""Reading a child process's output until it says something, for the tests that drive the CLI."""

import os
import select
import time


def read_until(pipe, text: str, timeout: float = 60.0) -> str:
    """What `pipe` carried until `text` appeared, read from its file descriptor: a buffered readline
    could hold the awaited line in Python's buffer, where select() cannot see it."""
    seen, end, fd, wanted = b"", time.monotonic() + timeout, pipe.fileno(), text.encode()
    while wanted not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
        assert ready, f"the process did not say {text!r} within {timeout} s: {seen!r}"
        chunk = os.read(fd, 65536)
        assert chunk, f"the process exited before saying {text!r}: {seen!r}"
        seen += chunk
    return seen.decode(errors="replace")
