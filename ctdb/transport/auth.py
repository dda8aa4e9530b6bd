"""Authenticated node-to-node links, sans-IO.

Python 3.11's ssl module has no TLS-PSK, so links authenticate with a small
handshake over the shared cluster key and then MAC every frame:

* The dialer sends HELLO (its PNN, a fresh nonce, the ids of every key it holds, in
  preference order).  The acceptor picks the first of those ids it also holds and
  answers with its own HELLO plus a proof; the dialer answers with its proof.  A proof
  is an HMAC of the whole transcript under the key, labelled by role, so neither side
  can replay the other's proof and a peer without the key learns nothing usable.
* Per-direction session keys are derived from the key and both nonces.  Every frame
  carries a 16-byte HMAC-SHA256 over (sequence number, frame); the sequence number is
  implicit (counted by both ends), so a forged, replayed or reordered frame fails
  verification and is dropped without advancing the count.

Two keys can be valid at once (rotation): a key file holds one key per line, the
first is preferred, all are accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from ctdb.errors import CtdbError

HELLO_MAGIC = b"PCTL"
NONCE_SIZE = 32
KEY_ID_SIZE = 8
PROOF_SIZE = 32
MAC_SIZE = 16
MIN_KEY_LENGTH = 16
MAX_KEYS = 8
_HELLO_FIXED = struct.Struct("!4sBBI32sB")


class AuthError(CtdbError, PermissionError):
    """The peer failed authentication or sent a malformed handshake."""


def parse_keys(text: str, filename: str = "cluster key") -> list[bytes]:
    """Keys from a key file: one per line, comments with ``#``, first preferred."""
    keys: list[bytes] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) < MIN_KEY_LENGTH:
            raise AuthError(
                f"{filename}:{lineno}: key too short (at least {MIN_KEY_LENGTH} characters)"
            )
        keys.append(line.encode())
    if not keys:
        raise AuthError(f"{filename}: no key in file")
    if len(keys) > MAX_KEYS:
        raise AuthError(f"{filename}: at most {MAX_KEYS} keys may be valid at once")
    return keys


def load_keys(path: Path) -> list[bytes]:
    """Read a key file, refusing one that others than root can read."""
    try:
        st = path.stat()
        text = path.read_text()
    except OSError as exc:
        raise AuthError(f"{path}: cannot read cluster key: {exc.strerror}") from exc
    if st.st_mode & 0o077:
        raise AuthError(f"{path}: cluster key must not be readable by group or others")
    return parse_keys(text, str(path))


def generate_key() -> str:
    """A fresh random key line (256 bits, hex)."""
    return os.urandom(32).hex()


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"pyctdb key id\0" + key).digest()[:KEY_ID_SIZE]


@dataclass(frozen=True, slots=True)
class Hello:
    version_min: int
    version_max: int
    pnn: int
    nonce: bytes
    key_ids: tuple[bytes, ...]

    def encode(self) -> bytes:
        body = _HELLO_FIXED.pack(
            HELLO_MAGIC,
            self.version_min,
            self.version_max,
            self.pnn,
            self.nonce,
            len(self.key_ids),
        ) + b"".join(self.key_ids)
        return struct.pack("!H", len(body)) + body

    @classmethod
    def decode(cls, body: bytes) -> Hello:
        if len(body) < _HELLO_FIXED.size:
            raise AuthError("handshake too short")
        magic, vmin, vmax, pnn, nonce, count = _HELLO_FIXED.unpack_from(body)
        if magic != HELLO_MAGIC:
            raise AuthError("not a pyctdb peer (bad handshake magic)")
        ids = body[_HELLO_FIXED.size :]
        if count == 0 or count > MAX_KEYS or len(ids) != count * KEY_ID_SIZE:
            raise AuthError("malformed handshake key list")
        if vmin > vmax:
            raise AuthError("malformed handshake version range")
        key_ids = tuple(ids[i : i + KEY_ID_SIZE] for i in range(0, len(ids), KEY_ID_SIZE))
        return cls(vmin, vmax, pnn, nonce, key_ids)


def negotiate_version(mine: tuple[int, int], theirs: tuple[int, int]) -> int:
    """The highest protocol version both ends speak."""
    low = max(mine[0], theirs[0])
    high = min(mine[1], theirs[1])
    if low > high:
        raise AuthError(
            f"no common protocol version (ours {mine[0]}-{mine[1]}, theirs {theirs[0]}-{theirs[1]})"
        )
    return high


def _proof(key: bytes, label: bytes, transcript: bytes) -> bytes:
    return hmac.digest(key, label + b"\0" + transcript, "sha256")


def _session_keys(key: bytes, dialer_nonce: bytes, acceptor_nonce: bytes) -> tuple[bytes, bytes]:
    seed = dialer_nonce + acceptor_nonce
    d2a = hmac.digest(key, b"pyctdb dialer->acceptor\0" + seed, "sha256")
    a2d = hmac.digest(key, b"pyctdb acceptor->dialer\0" + seed, "sha256")
    return d2a, a2d


class _Mac:
    """HMAC-SHA256 with the keyed inner and outer states computed once (RFC 2104).

    Copying two prepared SHA-256 states per frame gives the same bytes as
    ``hmac.digest(key, ...)`` at well under half the cost, and a link MACs every frame.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def tag(self, seq: int, frame: bytes | memoryview) -> bytes:
        inner = self._inner.copy()
        inner.update(seq.to_bytes(8, "big"))
        inner.update(frame)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:MAC_SIZE]


class FrameSigner:
    """MACs outgoing frames with an implicit sequence number."""

    __slots__ = ("_mac", "_seq")

    def __init__(self, key: bytes) -> None:
        self._mac = _Mac(key)
        self._seq = 0

    def sign(self, frame: bytes) -> bytes:
        tag = self._mac.tag(self._seq, frame)
        self._seq += 1
        return tag


class FrameVerifier:
    """Checks incoming frames; a frame that fails does not advance the sequence."""

    __slots__ = ("_mac", "_seq")

    def __init__(self, key: bytes) -> None:
        self._mac = _Mac(key)
        self._seq = 0

    def verify(self, frame: bytes | memoryview, mac: bytes | memoryview) -> bool:
        if not hmac.compare_digest(self._mac.tag(self._seq, frame), bytes(mac)):
            return False
        self._seq += 1
        return True


@dataclass(frozen=True, slots=True)
class Session:
    """The outcome of a successful handshake."""

    peer_pnn: int
    version: int
    signer: FrameSigner
    verifier: FrameVerifier


class DialerHandshake:
    """The connecting side: hello out, hello+proof in, proof out."""

    def __init__(self, keys: list[bytes], pnn: int, versions: tuple[int, int]) -> None:
        self._keys = {key_id(k): k for k in keys}
        self._versions = versions
        self.hello = Hello(versions[0], versions[1], pnn, os.urandom(NONCE_SIZE),
                           tuple(key_id(k) for k in keys))

    def first_message(self) -> bytes:
        return self.hello.encode()

    def on_reply(self, body: bytes, expected_pnn: int) -> tuple[bytes, Session]:
        """Check the acceptor's hello and proof; return our proof and the session."""
        if len(body) < PROOF_SIZE + KEY_ID_SIZE:
            raise AuthError("handshake reply too short")
        hello_part, chosen, proof = (
            body[: -PROOF_SIZE - KEY_ID_SIZE],
            body[-PROOF_SIZE - KEY_ID_SIZE : -PROOF_SIZE],
            body[-PROOF_SIZE:],
        )
        peer = Hello.decode(hello_part)
        if peer.pnn != expected_pnn:
            raise AuthError(f"peer claims to be node {peer.pnn}, expected node {expected_pnn}")
        key = self._keys.get(chosen)
        if key is None:
            raise AuthError("peer chose a key we do not hold")
        version = negotiate_version(self._versions, (peer.version_min, peer.version_max))
        transcript = self.hello.encode() + hello_part + chosen
        if not hmac.compare_digest(proof, _proof(key, b"acceptor", transcript)):
            raise AuthError("peer failed to prove it holds the cluster key")
        mine = _proof(key, b"dialer", transcript + proof)
        d2a, a2d = _session_keys(key, self.hello.nonce, peer.nonce)
        return mine, Session(peer.pnn, version, FrameSigner(d2a), FrameVerifier(a2d))


class AcceptorHandshake:
    """The accepting side: hello in, hello+proof out, proof in."""

    def __init__(self, keys: list[bytes], pnn: int, versions: tuple[int, int]) -> None:
        self._keys = {key_id(k): k for k in keys}
        self._pnn = pnn
        self._versions = versions
        self._state: tuple[bytes, bytes, bytes, Hello, int] | None = None

    def on_hello(self, body: bytes) -> tuple[Hello, bytes]:
        """Decode the dialer's hello; return it and our reply (hello + key id + proof)."""
        peer = Hello.decode(body)
        chosen = next((kid for kid in peer.key_ids if kid in self._keys), None)
        if chosen is None:
            raise AuthError(f"node {peer.pnn} holds no cluster key we accept")
        version = negotiate_version(self._versions, (peer.version_min, peer.version_max))
        key = self._keys[chosen]
        mine = Hello(self._versions[0], self._versions[1], self._pnn, os.urandom(NONCE_SIZE),
                     (chosen,))
        hello_part = mine.encode()[2:]
        transcript = struct.pack("!H", len(body)) + body + hello_part + chosen
        proof = _proof(key, b"acceptor", transcript)
        self._state = (key, transcript + proof, mine.nonce, peer, version)
        reply = hello_part + chosen + proof
        return peer, struct.pack("!H", len(reply)) + reply

    def on_proof(self, proof: bytes) -> Session:
        if self._state is None:
            raise AuthError("handshake out of order")
        key, transcript, nonce, peer, version = self._state
        if not hmac.compare_digest(proof, _proof(key, b"dialer", transcript)):
            raise AuthError(f"node {peer.pnn} failed to prove it holds the cluster key")
        d2a, a2d = _session_keys(key, peer.nonce, nonce)
        return Session(peer.pnn, version, FrameSigner(a2d), FrameVerifier(d2a))
