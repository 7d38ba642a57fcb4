"""Requests built by hand for the device tests (the Python device and the C receiver), signed like
the host signs them (PROTOCOL.md §5) when given a key, at any counter the test chooses."""

import hashlib
import struct
from dataclasses import replace

import numpy as np

from firmware_bridge import encoding as enc
from firmware_bridge.protocol import SIGNED, Begin, Commit, Encoding, Learn, MsgType, Rollback, Save, Update


def begin(update, model, update_id=9, base_id=0, encoding=Encoding.F32, counter=1, key=None, signed=None):
    """The BEGIN of `update` (its SHA-256 as the update hash), signed with `key` if given; `signed`
    sets the SIGNED flag without a key (then the hmac is 32 zero bytes)."""
    flag = SIGNED if (key is not None if signed is None else signed) else 0
    b = Begin(update_id, base_id, len(update), encoding, flag, counter, hashlib.sha256(update).digest())
    if not flag:
        return b
    return replace(b, hmac=enc.mac(key, MsgType.BEGIN, model, b.body()) if key is not None else bytes(32))


def commit(session, digest, model, key=None):
    """The COMMIT of the session `session` begins, its hmac bound to that BEGIN if `key` is given."""
    c = Commit(session.update_id, digest)
    return replace(c, hmac=enc.mac(key, MsgType.COMMIT, model, c.body(), session.body())) if key is not None else c


def update(data, digest, model, update_id=9, base_id=0, encoding=Encoding.F16, counter=1, key=None):
    """An UPDATE of `data`, signed with `key` if given."""
    u = Update(update_id, base_id, encoding, SIGNED if key is not None else 0, counter, digest, b"", data)
    return replace(u, hmac=enc.mac(key, MsgType.UPDATE, model, u.body())) if key is not None else u


def rollback(to_id, model, counter=1, key=None):
    """A ROLLBACK to `to_id`, signed with `key` if given."""
    r = Rollback(to_id, counter)
    return replace(r, hmac=enc.mac(key, MsgType.ROLLBACK, model, r.body())) if key is not None else r


def samples(xs, labels=None, targets=None):
    """LEARN's sample bytes: each input's float32, then its u32 label or its float32 targets."""
    out = b""
    for i, x in enumerate(xs):
        out += np.asarray(x, "<f4").tobytes()
        out += np.asarray(targets[i], "<f4").tobytes() if targets is not None else struct.pack("<I", labels[i])
    return out


def learn(data, n, model, counter=1, key=None):
    """A LEARN of n samples' bytes `data`, signed with `key` if given."""
    m = Learn(SIGNED if key is not None else 0, counter, n, b"", data)
    return replace(m, hmac=enc.mac(key, MsgType.LEARN, model, m.body())) if key is not None else m


def save(model, counter=1, key=None):
    """A SAVE, signed with `key` if given."""
    m = Save(SIGNED if key is not None else 0, counter)
    return replace(m, hmac=enc.mac(key, MsgType.SAVE, model, m.body())) if key is not None else m
