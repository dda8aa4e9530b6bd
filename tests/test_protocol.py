"""Wire protocol: round trips for every registered message, framing, fragments, fuzzing."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import pickle
import struct as pystruct
import subprocess
import sys
import threading
import typing
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from ctdb.protocol import (
    F64,
    FRAGMENT,
    FRAGMENT_SIZE,
    HEADER_SIZE,
    I32,
    I64,
    MAGIC,
    MAX_MESSAGE,
    MESSAGE_TYPES,
    MIN_VERSION,
    NODE_CURRENT,
    U8,
    U16,
    U32,
    U64,
    VERSION,
    Ack,
    Address,
    DaemonListReply,
    DaemonListRequest,
    EchoReply,
    EchoRequest,
    ErrorCode,
    ErrorReply,
    Flag,
    Fragment,
    GetLogLevelRequest,
    KeyValue,
    LinkInfo,
    LinkStatusReply,
    LinkStatusRequest,
    LogLevelReply,
    Message,
    PingReply,
    PingRequest,
    ProtocolError,
    Reassembler,
    Register,
    Registered,
    Service,
    SetLeader,
    SetLogLevelRequest,
    ShutdownRequest,
    StatusReply,
    StatusRequest,
    Subscribe,
    UnknownBody,
    Unsubscribe,
    UptimeReply,
    UptimeRequest,
    VersionReply,
    VersionRequest,
    decode,
    decode_payload,
    encode,
    encode_payload,
    fragment,
    message,
    message_class,
    peek_header,
    set_dst,
    set_src,
    struct,
)
from ctdb.protocol.codec import compile_struct
from ctdb.protocol.fields import Fixed
from ctdb.protocol.header import HEADER
from ctdb.record import fields_of, is_record

CATALOG = {
    0x0001: Fragment, 0x0002: ErrorReply, 0x0003: Ack, 0x0010: Register,
    0x0011: Registered, 0x0012: Subscribe, 0x0013: Unsubscribe, 0x0014: SetLeader,
    0x0015: LinkStatusRequest, 0x0016: LinkStatusReply, 0x0100: PingRequest,
    0x0101: PingReply, 0x0102: VersionRequest, 0x0103: VersionReply, 0x0104: UptimeRequest,
    0x0105: UptimeReply, 0x0106: StatusRequest, 0x0107: StatusReply,
    0x0108: GetLogLevelRequest, 0x0109: LogLevelReply, 0x010A: SetLogLevelRequest,
    0x010C: ShutdownRequest, 0x0200: DaemonListRequest, 0x0201: DaemonListReply,
    0x0F00: EchoRequest, 0x0F01: EchoReply,
}  # fmt: skip


def fast(examples: int) -> settings:
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


# --- strategies derived from the field annotations ---------------------------------

_SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "B": st.integers(0, 0xFF),
    "H": st.integers(0, 0xFFFF),
    "I": st.integers(0, 0xFFFFFFFF),
    "Q": st.integers(0, 2**64 - 1),
    "i": st.integers(-(2**31), 2**31 - 1),
    "q": st.integers(-(2**63), 2**63 - 1),
    "d": st.floats(allow_nan=False),
}


def value_strategy(hint: Any) -> st.SearchStrategy[Any]:
    """Any value the annotation can carry."""
    if isinstance(hint, Fixed):  # U8 ... F64 at run time (Annotated[int, Fixed] for mypy)
        return _SCALARS[hint.code]
    origin = typing.get_origin(hint)
    if hint is bool:
        return st.booleans()
    if hint is str:
        return st.text(max_size=12)
    if hint is bytes:
        return st.binary(max_size=40)
    if origin is list:
        return st.lists(value_strategy(typing.get_args(hint)[0]), max_size=4)
    if is_record(hint):
        return body_strategy(typing.cast(type, hint))
    raise AssertionError(f"no strategy for {hint!r}")


def body_strategy(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return st.builds(cls, *[value_strategy(hints[f.name]) for f in fields_of(cls)])


addresses = st.builds(Address, st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF))
flag_values = st.integers(0, 0xFF).map(Flag)


def message_strategy(body: st.SearchStrategy[Any]) -> st.SearchStrategy[Message]:
    return st.builds(
        Message,
        body,
        addresses,
        addresses,
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**64 - 1),
        flag_values,
    )


any_message = st.sampled_from(sorted(MESSAGE_TYPES)).flatmap(
    lambda t: message_strategy(body_strategy(MESSAGE_TYPES[t]))
)


def raw_frame(
    mtype: int,
    payload: bytes,
    *,
    hlen: int = HEADER_SIZE,
    magic: bytes = MAGIC,
    version: int = VERSION,
    length: int | None = None,
) -> bytes:
    """A frame built by hand, so tests can produce what ``encode`` never would."""
    length = hlen + len(payload) if length is None else length
    head = HEADER.pack(magic, version, 0, hlen, length, mtype, 0, 1, 2, 3, 4, 5, 6)
    return head + bytes(hlen - HEADER_SIZE) + payload


# --- catalog and round trips -------------------------------------------------------


def test_catalog_numbers_and_names() -> None:
    for mtype, cls in CATALOG.items():
        assert MESSAGE_TYPES[mtype] is cls
        assert message_class(mtype) is cls
        assert Message(object.__new__(cls)).msg_type == mtype
    assert message_class(0x7777) is None
    assert FRAGMENT == 0x0001
    assert int(ErrorCode.REFUSED) == 8
    assert int(Service.SUBSCRIBERS) == 0xFFFFFFFF


@fast(40)
@given(st.data())
def test_round_trip_every_registered_type(data: st.DataObject) -> None:
    covered = set()
    for mtype, cls in sorted(MESSAGE_TYPES.items()):
        msg = data.draw(message_strategy(body_strategy(cls)), label=cls.__name__)
        frame = encode(msg)
        note(f"{cls.__name__}: {frame.hex()}")
        assert decode(frame) == msg
        assert decode(bytearray(frame)) == msg
        assert decode(memoryview(frame)) == msg
        assert msg.msg_type == mtype == peek_header(frame).msg_type
        covered.add(mtype)
    assert covered == set(MESSAGE_TYPES)
    assert set(CATALOG) <= covered


@fast(200)
@given(any_message)
def test_header_fields_round_trip(msg: Message) -> None:
    frame = encode(msg)
    head = peek_header(frame)
    assert (head.version, head.header_length, head.length) == (VERSION, HEADER_SIZE, len(frame))
    assert (head.src, head.dst, head.flags) == (msg.src, msg.dst, msg.flags)
    assert (head.request_id, head.generation) == (msg.request_id, msg.generation)
    assert frame[:4] == MAGIC
    assert peek_header(frame[:HEADER_SIZE]) == head  # a stream reader's prefix is enough


def test_message_defaults() -> None:
    msg = decode(encode(Message(PingRequest())))
    assert msg.src == msg.dst == Address(NODE_CURRENT, 0)
    assert (msg.request_id, msg.generation, msg.flags) == (0, 0, Flag(0))
    assert isinstance(msg.flags, Flag)


def test_set_src_and_dst_patch_in_place() -> None:
    buf = bytearray(encode(Message(PingReply(3), request_id=9)))
    set_src(buf, Address(7, 0x10001))
    set_dst(buf, Address(NODE_CURRENT, Service.MASTERD))
    msg = decode(buf)
    assert msg.src == Address(7, 0x10001)
    assert msg.dst == Address(NODE_CURRENT, 2)
    assert (msg.body, msg.request_id) == (PingReply(3), 9)
    with pytest.raises(ProtocolError):
        set_src(bytearray(10), Address(1, 1))
    with pytest.raises(ProtocolError):
        set_dst(buf, Address(2**32, 0))


# --- versioning ----------------------------------------------------------------------


def test_unknown_type_decodes_as_unknown_body() -> None:
    msg = decode(raw_frame(0x7ABC, b"from the future"))
    assert msg.body == UnknownBody(0x7ABC, b"from the future")
    assert msg.msg_type == 0x7ABC
    assert (msg.src, msg.dst, msg.request_id, msg.generation) == (
        Address(1, 2), Address(3, 4), 5, 6,
    )  # fmt: skip
    forwarded = Message(msg.body, msg.src, msg.dst, msg.request_id, msg.generation)
    assert encode(forwarded) == raw_frame(0x7ABC, b"from the future")


def test_appended_payload_bytes_and_longer_header_are_ignored() -> None:
    payload = encode(Message(StatusReply("d", 1, "ok", [])))[HEADER_SIZE:]
    assert decode(raw_frame(0x0107, payload + b"new field")).body == StatusReply("d", 1, "ok", [])
    grown = raw_frame(0x0101, pystruct.pack(">I", 5), hlen=HEADER_SIZE + 16)
    assert decode(grown).body == PingReply(5)
    assert peek_header(grown).header_length == HEADER_SIZE + 16
    assert decode(raw_frame(0x0100, b"\x01\x02")).body == PingRequest()


@struct
class ItemV1:
    a: U32
    name: str


@struct
class ItemV2:
    a: U32
    name: str
    extra: list[U16] = dataclasses.field(default_factory=list)
    flag: bool = True


@struct
class ListV1:
    items: list[ItemV1]


@struct
class ListV2:
    items: list[ItemV2]


def test_missing_trailing_fields_take_defaults_and_extra_ones_are_skipped() -> None:
    assert decode_payload(ItemV2, encode_payload(ItemV1(1, "x"))) == ItemV2(1, "x", [], True)
    assert decode_payload(ItemV1, encode_payload(ItemV2(1, "x", [3], False))) == ItemV1(1, "x")
    one = encode_payload(ItemV1(1, "x")) + pystruct.pack(">I", 1) + b"\x00\x07"
    assert decode_payload(ItemV2, one) == ItemV2(1, "x", [7], True)
    with pytest.raises(ProtocolError):  # an optional field cut in half is an error
        decode_payload(ItemV2, encode_payload(ItemV1(1, "x")) + b"\x00\x00")
    # Nested structs are length-prefixed, so they can grow too.
    old = ListV1([ItemV1(1, "a"), ItemV1(2, "b")])
    new = ListV2([ItemV2(1, "a", [1, 2], False)])
    assert decode_payload(ListV2, encode_payload(old)) == ListV2([ItemV2(1, "a"), ItemV2(2, "b")])
    assert decode_payload(ListV1, encode_payload(new)) == ListV1([ItemV1(1, "a")])


@struct
class Everything:
    u8: U8
    u16: U16
    u32: U32
    u64: U64
    i32: I32
    i64: I64
    f64: F64
    flag: bool
    text: str
    blob: bytes
    flags: list[bool]
    matrix: list[list[U8]]
    words: list[str]
    inner: ItemV1
    inners: list[ItemV2]


@fast(150)
@given(body_strategy(Everything))
def test_every_field_kind_round_trips(value: Everything) -> None:
    raw = encode_payload(value)
    assert decode_payload(Everything, raw) == value
    assert decode_payload(Everything, bytearray(raw)) == value
    for cut in {0, 1, len(raw) // 2, len(raw) - 1}:
        with pytest.raises(ProtocolError):
            decode_payload(Everything, raw[:cut])


# --- decode errors -------------------------------------------------------------------


def test_truncated_payload_is_an_error() -> None:
    frame = encode(Message(StatusReply("name", 1, "ok", [])))
    items = [KeyValue("key", "value")] * 3
    body = encode(Message(StatusReply("name", 1, "state", items)))[HEADER_SIZE:]
    for cut in range(len(body)):
        with pytest.raises(ProtocolError):
            decode(raw_frame(0x0107, body[:cut]))
    for cut in range(len(frame)):
        with pytest.raises(ProtocolError):
            decode(frame[:cut])


def link_status_with_bool_byte(value: int) -> bytes:
    """A LinkStatusReply payload whose one LinkInfo has ``connected`` set to ``value``."""
    item = bytearray(encode_payload(LinkInfo(7, "a", True, False, 0)))
    item[4 + 4 + 1] = value  # after pnn, the address length and "a"
    return pystruct.pack(">III", 1, 1, len(item)) + item


def test_bool_bytes() -> None:
    body = decode(raw_frame(0x0016, link_status_with_bool_byte(0))).body
    assert body == LinkStatusReply(1, [LinkInfo(7, "a", False, False, 0)])


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (raw_frame(0x0100, b"", magic=b"CTDB"), "magic"),
        (raw_frame(0x0100, b"", version=MIN_VERSION - 1), "older"),
        (raw_frame(0x0100, b"", length=HEADER_SIZE + 1), "length"),
        (raw_frame(0x0100, b"", length=HEADER_SIZE - 1), "shorter"),
        (raw_frame(0x0100, b"", length=MAX_MESSAGE + 1), "exceeds"),
        (raw_frame(0x0100, b"")[:HEADER_SIZE - 1], "shorter"),
        (HEADER.pack(MAGIC, 1, 0, HEADER_SIZE - 4, HEADER_SIZE, 0x100, 0, 0, 0, 0, 0, 0, 0),
         "header length"),
        (raw_frame(0x0016, pystruct.pack(">II", 1, 0xFFFFFFFF)), "cannot fit"),
        (raw_frame(0x0016, link_status_with_bool_byte(2)), "bool"),
        (raw_frame(0x0109, pystruct.pack(">I", 2) + b"\xff\xfe"), "utf-8"),
    ],
)  # fmt: skip
def test_invalid_frames(frame: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        decode(frame)


def test_encode_errors_are_protocol_errors() -> None:
    for bad in [
        Message(PingReply(-1)),
        Message(PingReply(2**32)),
        Message(StatusReply("n", 1, "s", ["not a KeyValue"])),  # type: ignore[list-item]
        Message(EchoRequest("text")),  # type: ignore[arg-type]
        Message(Register(1, "ab")),  # type: ignore[arg-type]
        Message(LogLevelReply("\ud800")),
        Message(object()),
        Message(PingRequest(), request_id=-1),
        Message(PingRequest(), flags=Flag(0x100)),
        Message(EchoRequest(bytes(MAX_MESSAGE - HEADER_SIZE - 3))),
    ]:
        with pytest.raises(ProtocolError):
            encode(bad)
    assert len(encode(Message(EchoRequest(bytes(MAX_MESSAGE - HEADER_SIZE - 4))))) == MAX_MESSAGE


def test_registration_rules() -> None:
    with pytest.raises(ValueError, match="already PingRequest"):

        @message(0x0100)
        class Clash:
            pass

    with pytest.raises(TypeError, match="unsupported field type"):

        @struct
        class BareInt:
            n: int

    with pytest.raises(ValueError, match="16 bits"):
        message(0x10000)

    with pytest.raises(TypeError, match="frozen"):

        @struct
        @dataclasses.dataclass
        class Mutable:
            n: U32

    assert message_class(0x0100) is PingRequest


def test_import_is_light() -> None:
    code = "import sys, ctdb.protocol; print(sorted({'asyncio', 'socket'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_leaves_dataclasses_typing_and_codecs_for_later() -> None:
    """The CLI's start-up budget: nothing heavy is imported, nothing compiled up front."""
    heavy = "{'dataclasses', 'inspect', 'typing', 're'}"
    code = (
        "import sys, ctdb.protocol; from ctdb.protocol import codec; "
        f"print(sorted({heavy} & set(sys.modules)), len(codec._CODECS), len(codec.DECODERS))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "0", "0"]


# --- payload classes: frozen, slotted records ------------------------------------------


def test_payload_classes_behave_as_frozen_dataclasses() -> None:
    reply = ErrorReply(code=1, message="m")
    assert reply == ErrorReply(1, "m")
    assert reply != ErrorReply(2, "m")
    assert EchoRequest(b"m") != EchoReply(b"m")  # equal fields, different classes
    assert hash(reply) == hash(ErrorReply(1, "m"))
    assert repr(reply) == "ErrorReply(code=1, message='m')"
    assert repr(PingRequest()) == "PingRequest()"
    assert ErrorReply.__slots__ == ErrorReply.__match_args__ == ("code", "message")
    assert not hasattr(reply, "__dict__")
    for change in (
        lambda: setattr(reply, "code", 2),
        lambda: setattr(reply, "other", 2),
        lambda: delattr(reply, "code"),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            change()
    assert reply == copy.copy(reply) == copy.deepcopy(reply) == pickle.loads(pickle.dumps(reply))  # noqa: S301
    match reply:
        case ErrorReply(code, text):
            assert (code, text) == (1, "m")
        case _:
            pytest.fail("no match")
    msg = Message(PingRequest(), request_id=3)
    assert (msg.src, msg.dst, msg.request_id, msg.flags) == (
        Address(NODE_CURRENT, 0), Address(NODE_CURRENT, 0), 3, Flag(0),
    )  # fmt: skip
    assert str(inspect.signature(ErrorReply)) == "(code: 'U32', message: 'str') -> None"
    for args, kwargs, error in [
        ((1,), {}, "missing 1 required positional argument: 'message'"),
        ((1,), {"code": 2}, "got multiple values for argument 'code'"),
        ((1, "m"), {"nope": 3}, "got an unexpected keyword argument 'nope'"),
        ((1, "m", 3), {}, "takes 3 positional arguments but 4 were given"),
    ]:
        with pytest.raises(TypeError, match=error):
            ErrorReply(*args, **kwargs)


def test_generic_init_for_wide_records_and_default_factories() -> None:
    """More fields than the __init__ templates cover, or a default_factory."""
    assert ItemV2(name="n", a=2, flag=False) == ItemV2(2, "n", [], False)
    assert ItemV2(1, "x").extra is not ItemV2(1, "x").extra
    assert str(inspect.signature(ItemV2)) == (
        "(a: 'U32', name: 'str', extra: 'list[U16]' = <factory>, flag: 'bool' = True) -> None"
    )
    for args, kwargs, error in [
        ((), {}, "missing 2 required positional arguments: 'a' and 'name'"),
        ((1,), {"a": 2}, "got multiple values for argument 'a'"),
        ((1, "x"), {"nope": 3}, "got an unexpected keyword argument 'nope'"),
        ((1, "x", [], True, 5), {}, "takes from 3 to 5 positional arguments but 6 were given"),
    ]:
        with pytest.raises(TypeError, match=error):
            ItemV2(*args, **kwargs)
    wide = Everything(1, 2, 3, 4, 5, 6, 7.0, True, "t", b"b", [True], [[1]], ["w"],
                      ItemV1(1, "i"), [ItemV2(2, "j")])  # fmt: skip
    assert wide == Everything(*[getattr(wide, f.name) for f in fields_of(Everything)])
    assert wide == pickle.loads(pickle.dumps(wide))  # noqa: S301
    with pytest.raises(dataclasses.FrozenInstanceError):
        wide.u8 = 2  # type: ignore[misc]


def test_record_subclass_and_redefined_default() -> None:
    @struct
    class Base:
        a: U32
        b: str = "b"

    @struct
    class Child(Base):
        b: str = "c"
        c: U16 = 3

    assert [f.name for f in fields_of(Child)] == ["a", "b", "c"]
    assert Child(1) == Child(1, "c", 3)
    assert Child(1).b == "c"
    assert Child.__slots__ == ("c",)
    assert decode_payload(Child, encode_payload(Child(1, "x", 2))) == Child(1, "x", 2)
    assert decode_payload(Base, encode_payload(Child(1, "x", 2))) == Base(1, "x")


def test_first_use_compiles_once_across_threads() -> None:
    @struct
    class Racy:
        a: U32
        b: str

    barrier = threading.Barrier(8)
    results: list[object] = []

    def work(i: int) -> None:
        barrier.wait()
        results.append(decode_payload(Racy, encode_payload(Racy(i, "x"))) == Racy(i, "x"))
        results.append(compile_struct(Racy))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 8
    assert {id(r) for r in results if r is not True} == {id(compile_struct(Racy))}


# --- fragmentation -------------------------------------------------------------------


def echo_frame(total: int, **kwargs: Any) -> bytes:
    """An EchoRequest frame of exactly ``total`` bytes."""
    size = total - HEADER_SIZE - 4
    frame = encode(Message(EchoRequest(bytes(i % 251 for i in range(size))), **kwargs))
    assert len(frame) == total
    return frame


def reassemble(frames: list[bytes], reassembler: Reassembler | None = None) -> bytes:
    reassembler = reassembler or Reassembler()
    done = [out for f in frames if (out := reassembler.feed(f)) is not None]
    assert len(done) == 1
    assert len(reassembler) == 0
    return done[0]


@pytest.mark.parametrize(
    "total",
    [HEADER_SIZE + 4, FRAGMENT_SIZE - 1, FRAGMENT_SIZE, FRAGMENT_SIZE + 1,
     2 * (FRAGMENT_SIZE - 64), 2 * (FRAGMENT_SIZE - 64) + 1, 3 * FRAGMENT_SIZE],
)  # fmt: skip
def test_fragment_round_trip_at_boundaries(total: int) -> None:
    route = {"src": Address(4, 0x10002), "dst": Address(NODE_CURRENT, 6)}
    frame = echo_frame(total, request_id=77, generation=12, flags=Flag.REQUEST, **route)
    pieces = fragment(frame, msg_id=5)
    if total <= FRAGMENT_SIZE:
        assert pieces == [frame]
        assert Reassembler().feed(frame) is frame
        return
    assert len(pieces) == -(-total // (FRAGMENT_SIZE - 64))
    for piece in pieces:
        head = peek_header(piece)
        assert len(piece) <= FRAGMENT_SIZE
        assert head.msg_type == FRAGMENT
        assert (head.src, head.dst, head.request_id, head.generation, head.flags) == (
            route["src"], route["dst"], 77, 12, Flag.REQUEST,
        )  # fmt: skip
        assert isinstance(decode(piece).body, Fragment)
    assert reassemble(pieces) == frame


@fast(200)
@given(st.integers(HEADER_SIZE + 4, 1500), st.integers(65, 400), st.integers(0, 2**32 - 1))
def test_fragment_round_trip_small_sizes(total: int, size: int, msg_id: int) -> None:
    frame = echo_frame(total)
    pieces = fragment(frame, msg_id, size)
    assert all(len(p) <= size for p in pieces)
    assert reassemble(pieces) == frame if len(pieces) > 1 else pieces == [frame]


def test_sixteen_mib_message() -> None:
    data = bytes(range(256)) * (16 * 1024 * 1024 // 256)
    msg = Message(EchoRequest(data), src=Address(1, 5), dst=Address(2, 6), request_id=3)
    frame = encode(msg)
    pieces = fragment(frame, msg_id=1)
    assert len(pieces) > 256
    assert all(len(p) <= FRAGMENT_SIZE for p in pieces)
    assert decode(reassemble(pieces)) == msg


def test_interleaved_sources_and_patched_addresses() -> None:
    a = fragment(echo_frame(1000, src=Address(1, 1)), 7, 200)
    b = fragment(echo_frame(900, src=Address(2, 1)), 7, 200)
    patched = []
    for piece in b:  # a router rewrote the pieces' destination on the way
        buf = bytearray(piece)
        set_dst(buf, Address(9, 9))
        patched.append(bytes(buf))
    reassembler, done = Reassembler(), []
    for x, y in zip(a, patched, strict=False):
        done += [reassembler.feed(x), reassembler.feed(y)]
    done += [reassembler.feed(p) for p in a[len(patched) :]]
    complete = [d for d in done if d is not None]
    assert complete[0] == echo_frame(900, src=Address(2, 1), dst=Address(9, 9))
    assert complete[1] == echo_frame(1000, src=Address(1, 1))


def test_out_of_order_fragment_is_an_error_and_drops_the_partial() -> None:
    pieces = fragment(echo_frame(1000), 3, 200)
    reassembler = Reassembler()
    with pytest.raises(ProtocolError, match="offset"):
        reassembler.feed(pieces[1])
    assert reassembler.feed(pieces[0]) is None
    with pytest.raises(ProtocolError, match="offset"):
        reassembler.feed(pieces[2])
    assert len(reassembler) == 0
    with pytest.raises(ProtocolError):
        reassembler.feed(pieces[1])  # the partial is gone
    assert reassemble(pieces, reassembler) == echo_frame(1000)


def fragment_frame(body: Fragment) -> bytes:
    return encode(Message(body, src=Address(1, 1)))


def test_fragment_limits_and_nesting() -> None:
    reassembler = Reassembler()
    with pytest.raises(ProtocolError):
        reassembler.feed(fragment_frame(Fragment(1, MAX_MESSAGE + 1, 0, b"x")))
    with pytest.raises(ProtocolError):
        reassembler.feed(fragment_frame(Fragment(1, 100, 0, bytes(101))))
    with pytest.raises(ProtocolError):  # the first piece's own header disagrees
        reassembler.feed(fragment_frame(Fragment(1, 100, 0, echo_frame(60))))
    inner = fragment_frame(Fragment(2, 60, 0, b"abc"))
    with pytest.raises(ProtocolError, match="another fragment"):
        reassembler.feed(fragment_frame(Fragment(1, len(inner), 0, inner)))
    with pytest.raises(ProtocolError):
        fragment(echo_frame(1000), 1, size=64)
    with pytest.raises(ProtocolError):
        fragment(echo_frame(1000), 2**32, size=200)
    assert len(reassembler) == 0


def test_pending_limit_and_discard() -> None:
    reassembler = Reassembler(max_pending=3)
    firsts = {n: fragment(echo_frame(500, src=Address(n, 1)), n, 200) for n in range(1, 6)}
    for pieces in firsts.values():
        assert reassembler.feed(pieces[0]) is None
    assert len(reassembler) == 3
    with pytest.raises(ProtocolError):  # the oldest partials were dropped
        reassembler.feed(firsts[1][1])
    reassembler.discard(Address(4, 1))
    assert len(reassembler) == 2
    with pytest.raises(ProtocolError):
        reassembler.feed(firsts[4][1])
    assert [reassembler.feed(p) for p in firsts[5][1:]][-1] == echo_frame(500, src=Address(5, 1))
    assert len(reassembler) == 1


# --- fuzzing: nothing but ProtocolError may escape ----------------------------------


def only_protocol_errors(func: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        func(data)


def feed_fresh(data: bytes) -> object:
    return Reassembler().feed(data)


@fast(1500)
@given(st.binary(max_size=120))
def test_fuzz_random_bytes(data: bytes) -> None:
    for func in (decode, peek_header, feed_fresh):
        only_protocol_errors(func, data)
        only_protocol_errors(func, MAGIC + data)
        only_protocol_errors(func, raw_frame(data[0] if data else 0x0107, data[1:]))


def mutate(frame: bytes, data: st.DataObject) -> bytes:
    buf = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["flip", "cut", "extend", "length", "hlen", "byte"]))
        if kind == "flip" and buf:
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "cut":
            del buf[data.draw(st.integers(0, len(buf))) :]
        elif kind == "extend":
            buf += data.draw(st.binary(min_size=1, max_size=16))
        elif kind == "length" and len(buf) >= 12:
            pystruct.pack_into(">I", buf, 8, data.draw(st.integers(0, 2**32 - 1)))
        elif kind == "hlen" and len(buf) >= 8:
            pystruct.pack_into(">H", buf, 6, data.draw(st.integers(0, 0xFFFF)))
        elif kind == "byte" and len(buf) > HEADER_SIZE:  # corrupt the payload only
            i = data.draw(st.integers(HEADER_SIZE, len(buf) - 1))
            buf[i] = data.draw(st.integers(0, 255))
    if len(buf) >= 12 and data.draw(st.booleans()):  # keep the length valid: reach payloads
        pystruct.pack_into(">I", buf, 8, len(buf))
    return bytes(buf)


@fast(1500)
@given(any_message, st.data())
def test_fuzz_mutated_frames(msg: Message, data: st.DataObject) -> None:
    bad = mutate(encode(msg), data)
    for func in (decode, peek_header, feed_fresh):
        only_protocol_errors(func, bad)


@fast(300)
@given(st.integers(HEADER_SIZE + 4, 800), st.data())
def test_fuzz_mutated_fragments(total: int, data: st.DataObject) -> None:
    pieces = fragment(echo_frame(total), 1, 120)
    i = data.draw(st.integers(0, len(pieces) - 1))
    pieces[i] = mutate(pieces[i], data)
    reassembler = Reassembler()
    for piece in pieces:
        try:
            out = reassembler.feed(piece)
        except ProtocolError:
            continue
        assert out is None or isinstance(out, bytes)
