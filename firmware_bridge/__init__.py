"""The firmware bridge: stream a learned head's weights over a UART to a microcontroller that
applies them atomically (PROTOCOL.md is the specification).

    >>> from firmware_bridge import push, infer
    >>> report = push("/dev/ttyACM0", head_layers, encoding="int8", verify=True)
    >>> infer("/dev/ttyACM0", x)          # the head's output, computed on the device

Modules: protocol (messages, error codes), frame (the codec), link (frames over pyserial),
image (the weight image), encoding (f32/f16/int8/sparse updates, HMAC), mirror (what devices
hold), host (push/infer/status/rollback, `edgefdfa push`), emulator (a device in Python,
`edgefdfa device`); c/ holds the C side.
"""

from .host import PushReport, infer, push, rollback, status
from .protocol import Code, DeviceTimeout, ProtocolError

__all__ = ["push", "infer", "status", "rollback", "PushReport", "Code", "ProtocolError", "DeviceTimeout"]
