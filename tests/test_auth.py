"""The link handshake and frame MACs, sans-IO."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctdb.transport.auth import (
    AcceptorHandshake,
    AuthError,
    DialerHandshake,
    Hello,
    negotiate_version,
    parse_keys,
)

K1 = b"k1-0123456789abcdef0123456789abcdef"
K2 = b"k2-fedcba9876543210fedcba9876543210"
K3 = b"k3-00000000000000000000000000000000"


def handshake(dialer_keys: list[bytes], acceptor_keys: list[bytes],
              dv: tuple[int, int] = (1, 1), av: tuple[int, int] = (1, 1)):
    d = DialerHandshake(dialer_keys, 0, dv)
    a = AcceptorHandshake(acceptor_keys, 1, av)
    first = d.first_message()
    hello, reply = a.on_hello(first[2:])
    assert hello.pnn == 0
    proof, dsession = d.on_reply(reply[2:], expected_pnn=1)
    asession = a.on_proof(proof)
    return dsession, asession


def test_shared_key_gives_matching_sessions() -> None:
    d, a = handshake([K1], [K1])
    assert (d.peer_pnn, a.peer_pnn) == (1, 0)
    frame = b"x" * 100
    assert a.verifier.verify(frame, d.signer.sign(frame))
    assert d.verifier.verify(frame, a.signer.sign(frame))


@pytest.mark.parametrize(
    ("dialer", "acceptor"),
    [
        ([K1], [K1, K2]),       # acceptor already accepts the new key
        ([K2, K1], [K1]),       # dialer prefers the new key, acceptor only has the old
        ([K2, K1], [K1, K2]),   # both during rotation, different preference
    ],
)
def test_rotation_keeps_links_up(dialer: list[bytes], acceptor: list[bytes]) -> None:
    d, a = handshake(dialer, acceptor)
    assert a.verifier.verify(b"f", d.signer.sign(b"f"))


def test_no_shared_key_is_refused() -> None:
    with pytest.raises(AuthError, match="holds no cluster key we accept"):
        handshake([K1], [K2])


def test_wrong_key_with_a_known_key_id_fails_the_proof() -> None:
    d = DialerHandshake([K3], 0, (1, 1))
    # An impostor that learned K1's id but holds K3 instead.
    from ctdb.transport.auth import key_id

    d.hello = Hello(1, 1, 0, d.hello.nonce, (key_id(K1),))
    a = AcceptorHandshake([K1], 1, (1, 1))
    _, reply = a.on_hello(d.first_message()[2:])
    d._keys[key_id(K1)] = K3
    with pytest.raises(AuthError, match="failed to prove"):
        d.on_reply(reply[2:], expected_pnn=1)


def test_acceptor_without_key_cannot_fool_dialer() -> None:
    d = DialerHandshake([K1], 0, (1, 1))
    a = AcceptorHandshake([K3], 1, (1, 1))
    from ctdb.transport.auth import key_id

    a._keys = {key_id(K1): K3}
    _, reply = a.on_hello(d.first_message()[2:])
    with pytest.raises(AuthError, match="failed to prove"):
        d.on_reply(reply[2:], expected_pnn=1)


def test_wrong_peer_pnn_is_refused() -> None:
    d = DialerHandshake([K1], 0, (1, 1))
    a = AcceptorHandshake([K1], 2, (1, 1))
    _, reply = a.on_hello(d.first_message()[2:])
    with pytest.raises(AuthError, match="claims to be node 2"):
        d.on_reply(reply[2:], expected_pnn=1)


def test_forged_and_replayed_frames_fail() -> None:
    d, a = handshake([K1], [K1])
    f1, f2 = b"frame one", b"frame two"
    m1, m2 = d.signer.sign(f1), d.signer.sign(f2)
    assert a.verifier.verify(f1, m1)
    assert not a.verifier.verify(f1, m1)           # replay
    assert not a.verifier.verify(b"frame tw0", m2)  # forged content
    assert not a.verifier.verify(f2, b"\0" * 16)   # forged MAC
    assert a.verifier.verify(f2, m2)                # the genuine frame still passes


@pytest.mark.parametrize(
    ("mine", "theirs", "expected"),
    [((1, 1), (1, 1), 1), ((1, 3), (1, 2), 2), ((2, 4), (1, 3), 3), ((1, 1), (1, 5), 1)],
)
def test_version_negotiation(mine: tuple[int, int], theirs: tuple[int, int],
                             expected: int) -> None:
    assert negotiate_version(mine, theirs) == expected


def test_disjoint_versions_refused() -> None:
    with pytest.raises(AuthError, match="no common protocol version"):
        negotiate_version((1, 1), (2, 3))


@given(st.binary(max_size=300))
def test_hello_decoder_only_raises_auth_error(data: bytes) -> None:
    with contextlib.suppress(AuthError):
        Hello.decode(data)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "no key in file"),
        ("# only a comment\n", "no key in file"),
        ("short\n", ":1: key too short"),
        ("\n".join(["k" * 20 + str(i) for i in range(9)]), "at most 8 keys"),
    ],
)
def test_bad_key_files(text: str, error: str) -> None:
    with pytest.raises(AuthError, match=error):
        parse_keys(text, "cluster.key")


def test_key_file_order_is_preference() -> None:
    assert parse_keys("# new first\n" + "b" * 32 + "\n" + "a" * 32 + "\n") == [
        b"b" * 32, b"a" * 32]


@given(st.binary(min_size=16, max_size=200), st.binary(max_size=2000),
       st.integers(0, 5))
def test_frame_mac_is_standard_hmac_sha256(key: bytes, frame: bytes, seq: int) -> None:
    """The precomputed-state MAC is exactly HMAC-SHA256(key, seq || frame), truncated."""
    import hmac as std

    from ctdb.transport.auth import FrameSigner

    signer = FrameSigner(key)
    for _ in range(seq):
        signer.sign(b"")
    expected = std.digest(key, seq.to_bytes(8, "big") + frame, "sha256")[:16]
    assert signer.sign(frame) == expected
