"""Random hostile frames, for every device the tests drive (the Python emulator in tests/bridge, the
C receiver in tests/firmware): noise, unknown and device-only types, chunks at any offset, BEGINs,
COMMITs, UPDATEs, ROLLBACKs, LEARNs and SAVEs with arbitrary fields, counters and (forged) hmacs,
INFERs and LEARN samples with any float32 values and labels (for a head of 4 inputs)."""

import struct

import numpy as np
from hypothesis import strategies as st

from firmware_bridge.frame import encode
from firmware_bridge.protocol import Begin, Commit, MsgType, Rollback, Update

macs = st.sampled_from([b"", bytes(32)])
counters = st.sampled_from([0, 1, 2, 2**32 - 1])
learn_samples = st.lists(st.tuples(st.lists(st.floats(width=32), min_size=4, max_size=4),
                                   st.sampled_from([0, 1, 2, 2**32 - 1])), max_size=3)


def learn_frame(flags, counter, n, mac, samples):
    """A LEARN whose n, hmac and sample count need not agree with its flags or each other."""
    data = b"".join(np.asarray(x, "<f4").tobytes() + struct.pack("<I", label) for x, label in samples)
    return encode(MsgType.LEARN, 1, struct.pack("<BIB", flags, counter, n) + mac + data)


frames = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda k, s, p: encode(k, s, p), st.sampled_from(list(MsgType) + [0, 0x42]), st.integers(0, 0xFFFF),
              st.binary(max_size=50)),
    st.builds(lambda o, d: encode(MsgType.CHUNK, 1, struct.pack("<I", o) + d), st.integers(0, 2**32 - 1),
              st.binary(min_size=1, max_size=40)),
    st.builds(lambda b, m: encode(MsgType.BEGIN, 1, b.pack() + m), st.builds(  # an hmac whatever the flags say
        Begin, st.integers(0, 3), st.integers(0, 2), st.integers(0, 200), st.integers(0, 6), st.integers(0, 3),
        counters, st.binary(min_size=32, max_size=32)), macs),
    st.builds(lambda c: encode(MsgType.COMMIT, 1, c.pack()), st.builds(
        Commit, st.integers(0, 3), st.binary(min_size=32, max_size=32), macs)),
    st.builds(lambda u: encode(MsgType.UPDATE, 1, u.pack()), st.builds(
        Update, st.integers(0, 3), st.integers(0, 2), st.integers(0, 6), st.integers(0, 3), counters,
        st.binary(min_size=32, max_size=32), macs, st.binary(max_size=40))),
    st.builds(lambda r: encode(MsgType.ROLLBACK, 1, r.pack()), st.builds(Rollback, st.integers(0, 3), counters, macs)),
    st.builds(learn_frame, st.integers(0, 2), counters, st.integers(0, 4), macs, learn_samples),
    st.builds(lambda f, c, m: encode(MsgType.SAVE, 1, struct.pack("<BI", f, c) + m), st.integers(0, 2), counters, macs),
    st.builds(lambda x: encode(MsgType.INFER, 2, np.asarray(x, "<f4").tobytes()),
              st.lists(st.floats(width=32), min_size=4, max_size=4)),
)
