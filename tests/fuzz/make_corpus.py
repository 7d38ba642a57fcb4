"""Write the fuzz tier's seed corpus (tests/fuzz/corpus/): the named hostile frames of
tests/firmware/test_receiver.py and whole sessions as the host builds them (chunked, one-frame,
signed, sparse, ROLLBACK), each with the harness's two leading bytes (configuration, restart point;
tests/fuzz/fuzz_rx.c). Run from the repo root: python -m tests.fuzz.make_corpus
"""

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from firmware_bridge import encoding as enc
from firmware_bridge import host
from firmware_bridge import image as img
from firmware_bridge.emulator import Device
from firmware_bridge.learning import LearnConfig
from firmware_bridge.frame import FrameReader, encode
from firmware_bridge.protocol import Chunk, Empty, Encoding, Hello, MsgType, Rollback, Vector
from firmware_bridge.protocol import model_id
from tests.bridge import wire as req
from tests.firmware.test_receiver import CORPUS, KEY, LAYERS, START, STATUS_REQ

MODEL = model_id(LAYERS)

OUT = Path(__file__).with_name("corpus")
KEYED, FRAME_256, LEARNS = 0x01, 0x04, 0x10  # fuzz_rx.c byte 0: bit 0 keyed, bits 2-3 max_frame (1: 256), bit 4 learns


class Wire:
    """Requests to a Python device, recorded as wire bytes; the device answers as the C one would."""

    def __init__(self, key, max_frame, learn=None):
        self.device = Device(LAYERS, START, key=key, max_frame=max_frame, learn=learn)
        self.key, self.seq, self.bytes = key, 0, b""

    def send(self, kind, message):
        self.seq += 1
        wire = encode(kind, self.seq, message.pack())
        self.bytes += wire
        return [m for item in FrameReader(self.device.max_frame).feed(wire) for _, _, m in self.device.handle(item)]

    def hello(self) -> Hello:
        return self.send(MsgType.HELLO_REQ, Empty())[0]

    def push(self, target, code, base=None):
        """One push as host.push sends it: BEGIN and CHUNKs and COMMIT, or one UPDATE."""
        hello = self.hello()
        update = enc.encode(target, LAYERS, code, base=base)
        digest = img.digest(enc.decode(update, LAYERS, code, base))
        begin, commit = host.signed_session(self.key, hello, code, update, digest)
        if 12 + 46 + len(commit.hmac) + len(update) <= self.device.max_frame:
            self.send(MsgType.UPDATE, host.one_frame(self.key, hello, begin, commit, update))
            return
        self.send(MsgType.BEGIN, begin)
        size = self.device.max_frame - 16
        for at in range(0, len(update), size):
            self.send(MsgType.CHUNK, Chunk(at, update[at:at + size]))
        self.send(MsgType.COMMIT, commit)

    def rollback(self, to_id):
        hello = self.hello()
        r = Rollback(to_id, hello.counter + 1)
        if self.key:
            r = replace(r, hmac=enc.mac(self.key, MsgType.ROLLBACK, hello.model_id, r.body()))
        self.send(MsgType.ROLLBACK, r)


def learning_sessions():
    """(name, configuration byte, wire) of a learning device taught, saving, refusing, pushed to."""
    rng = np.random.default_rng(0)
    for keyed in (False, True):
        w = Wire(KEY if keyed else None, 256, LearnConfig(lr=0.1, save_every=3))
        for n in (1, 2, 4):
            xs = rng.standard_normal((n, 4)).astype(np.float32)
            labels = [int(v) for v in rng.integers(0, 2, n)]
            w.send(MsgType.LEARN, req.learn(req.samples(xs, labels), n, MODEL, w.hello().counter + 1, w.key))
        w.send(MsgType.LEARN, req.learn(req.samples(xs, [2] * n), n, MODEL, w.hello().counter + 1, w.key))  # BAD_LABEL
        w.send(MsgType.LEARN, req.learn(req.samples(xs * 1e30, labels), n, MODEL, w.hello().counter + 1, w.key))
        w.send(MsgType.SAVE, req.save(MODEL, w.hello().counter + 1, w.key))
        w.push(START + 1, Encoding.F32)
        w.send(MsgType.SAVE, req.save(MODEL, w.hello().counter + 1, w.key))
        w.bytes += STATUS_REQ
        assert w.device.learning.steps >= 7
        yield f"learning_{'keyed' if keyed else 'open'}", (KEYED if keyed else 0) | FRAME_256 | LEARNS, w.bytes


def sessions():
    """(name, configuration byte, wire) of whole host sessions."""
    for keyed in (False, True):
        for frame, max_frame in ((0, 128), (FRAME_256, 256)):
            w = Wire(KEY if keyed else None, max_frame)
            w.push(START + 1, Encoding.F32)
            first = w.device.ids[w.device.active]
            target = START + 1
            target[[2, 7]] += 0.5
            w.push(target, Encoding.SPARSE_INT8, base=w.device.weights.copy())
            w.push(START * 2, Encoding.F16)
            w.push(START - 1, Encoding.INT8_CHANNEL)
            w.rollback(w.device.ids[1 - w.device.active])
            w.send(MsgType.INFER, Vector(np.array([1, -2, 0.5, 3], np.float32)))  # a push's verify
            w.bytes += STATUS_REQ
            assert first != 0 and w.device.counter == (5 if keyed else 0), "every push took"
            yield f"session_{'keyed' if keyed else 'open'}_{max_frame}", (KEYED if keyed else 0) | frame, w.bytes


def main():
    OUT.mkdir(exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    for name, (prelude, hostile, _, *keyed) in CORPUS.items():
        config = KEYED if keyed else 0
        (OUT / name).write_bytes(bytes([config, 255]) + prelude + hostile + STATUS_REQ)
    for name, config, wire in [*sessions(), *learning_sessions()]:
        for restart in (255, 128):
            (OUT / f"{name}_restart_{restart}").write_bytes(bytes([config, restart]) + wire)
    files = list(OUT.iterdir())
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(files))).hexdigest()[:12]
    print(f"{len(files)} seeds, {sum(f.stat().st_size for f in files):,} bytes ({digest}) in {OUT}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
