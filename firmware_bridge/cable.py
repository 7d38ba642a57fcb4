"""A virtual null-modem cable: two pseudo-terminals joined by a thread, so a host and an emulated
device on one machine talk over real serial ports (what `socat pty,raw pty,raw` would do).

    with Cable() as cable:
        Emulator(cable.device, device).start()
        host.push(cable.host, head)
"""

from __future__ import annotations

import os
import select
import threading
import tty

from edgefdfa.errors import SourceError


class _End:
    """One pty: the cable keeps the master; `path` is the slave a serial port opens (held open, raw)."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


class Cable:
    """Bytes written to either end's `path` arrive, unchanged and in order, at the other end's."""

    def __init__(self) -> None:
        if not hasattr(os, "openpty"):
            raise SourceError("a virtual cable needs POSIX pseudo-terminals")
        self._ends = (_End(), _End())
        self.host, self.device = (end.path for end in self._ends)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        a, b = (end.master for end in self._ends)
        other = {a: b, b: a}
        while not self._stop.is_set():
            ready, _, _ = select.select([a, b], [], [], 0.05)
            try:
                for fd in ready:
                    data = memoryview(os.read(fd, 65536))
                    while data:  # a pty may take part of a write
                        data = data[os.write(other[fd], data):]
            except OSError:  # an end was closed
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for end in self._ends:
            end.close()

    def __enter__(self) -> Cable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
