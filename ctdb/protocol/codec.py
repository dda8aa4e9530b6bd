"""Schema-driven payload codec and the message-type registry.

A payload class is a frozen dataclass whose annotations name wire encodings (``U32``,
``str``, ``list[KeyValue]`` ...).  Its encoder and decoder closures are built once, at
registration, with runs of consecutive fixed-size fields merged into one
``struct.Struct``, so encoding a message costs a few C calls, not a walk over the
annotations.  Fields with defaults are optional on the wire: an older sender that
stops early gets them defaulted; bytes after the last known field are ignored.
"""

from __future__ import annotations

import dataclasses
import operator
import struct as _struct
import typing
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform

from ctdb.errors import ProtocolError
from ctdb.protocol.fields import (
    F64,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Buffer,
    Decoder,
    Encoder,
    FieldDec,
    FieldEnc,
    Fixed,
    Var,
    check_bools,
    field_codec,
    short,
)

__all__ = [
    "F64",
    "I32",
    "I64",
    "MESSAGE_TYPES",
    "U8",
    "U16",
    "U32",
    "U64",
    "Codec",
    "Fixed",
    "as_buffer",
    "compile_struct",
    "decode_payload",
    "encode_payload",
    "message",
    "message_class",
    "struct",
    "type_of",
]

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True)
class Codec:
    """The compiled closures of one dataclass."""

    fill: FieldEnc  # (obj, out): append the encoded fields to out
    encode: Encoder  # obj -> the encoded fields as one bytes
    decode: Decoder  # (buf, pos, end) -> obj, ignoring bytes after the known fields


MESSAGE_TYPES: dict[int, type] = {}
ENCODERS: dict[type, tuple[int, FieldEnc]] = {}  # payload class -> (type, fill)
DECODERS: dict[int, Decoder] = {}
_CODECS: dict[type, Codec] = {}
_BUILDING: set[type] = set()


def as_buffer(data: bytes | bytearray | memoryview) -> Buffer:
    """Bytes or a flat byte memoryview, so slicing is cheap and indexes are byte offsets."""
    if type(data) is bytes:
        return data
    view = data if type(data) is memoryview else memoryview(data)
    if view.format != "B" or view.ndim != 1 or not view.c_contiguous:
        return view.tobytes()
    return view


@dataclasses.dataclass(slots=True)
class _Run:
    """Consecutive fixed-size fields, handled by one ``struct.Struct``."""

    names: list[str]
    codes: list[str]

    def getter(self) -> Callable[[Any], tuple[Any, ...]]:
        if len(self.names) == 1:
            name = self.names[0]
            return lambda obj: (getattr(obj, name),)
        return operator.attrgetter(*self.names)

    def packer(self) -> Callable[..., bytes]:
        return _struct.Struct(">" + "".join(self.codes)).pack


_Spec = tuple[str, Fixed | Var]
_Part = _Run | tuple[str, Var]


def _parts(specs: list[_Spec]) -> list[_Part]:
    out: list[_Part] = []
    for name, codec in specs:
        if isinstance(codec, Var):
            out.append((name, codec))
        elif out and isinstance(out[-1], _Run):
            out[-1].names.append(name)
            out[-1].codes.append(codec.code)
        else:
            out.append(_Run([name], [codec.code]))
    return out


def _enc_step(part: _Part) -> FieldEnc:
    if isinstance(part, _Run):
        pack, getall = part.packer(), part.getter()
        return lambda obj, out: out.append(pack(*getall(obj)))
    get, fenc = operator.attrgetter(part[0]), part[1].enc
    return lambda obj, out: fenc(get(obj), out)


def _build_encoder(specs: list[_Spec]) -> tuple[FieldEnc, Encoder]:
    parts = _parts(specs)
    if not parts:
        return (lambda obj, out: None), (lambda obj: b"")
    if len(parts) == 1 and isinstance(parts[0], _Run):
        pack, getall = parts[0].packer(), parts[0].getter()
        return (lambda obj, out: out.append(pack(*getall(obj)))), (lambda obj: pack(*getall(obj)))
    steps = [_enc_step(p) for p in parts]

    def fill(obj: Any, out: list[bytes]) -> None:
        for step in steps:
            step(obj, out)

    def encode(obj: Any) -> bytes:
        out: list[bytes] = []
        for step in steps:
            step(obj, out)
        return b"".join(out)

    return fill, encode


def _dec_step(part: _Part, where: str) -> FieldDec:
    if not isinstance(part, _Run):
        return part[1].dec
    codes = part.codes
    layout = _struct.Struct(">" + "".join("B" if c == "?" else c for c in codes))
    unpack, size, label = layout.unpack_from, layout.size, f"{where}.{part.names[0]}"
    bools = [i for i, c in enumerate(codes) if c == "?"]

    def run(buf: Buffer, pos: int, end: int, vals: list[Any]) -> int:
        stop = pos + size
        if stop > end:
            raise short(label, size, end - pos)
        start = len(vals)
        vals += unpack(buf, pos)
        if bools:
            check_bools(vals, [start + i for i in bools], where)
        return stop

    return run


def _build_decoder(cls: type, specs: list[_Spec], required: int) -> Decoder:
    where = cls.__name__
    if not specs:
        empty = cls()  # frozen and fieldless: one shared instance is safe
        return lambda buf, pos, end: empty
    req = _parts(specs[:required])
    only = req[0] if len(req) == 1 and required == len(specs) else None
    if isinstance(only, _Run) and "?" not in only.codes:  # fixed-size non-bools only
        layout = _struct.Struct(">" + "".join(only.codes))
        unpack, size = layout.unpack_from, layout.size

        def fixed(buf: Buffer, pos: int, end: int) -> Any:
            if pos + size > end:
                raise short(where, size, end - pos)
            return cls(*unpack(buf, pos))

        return fixed
    req_steps = [_dec_step(p, where) for p in req]
    opt_steps = [_dec_step(p, where) for spec in specs[required:] for p in _parts([spec])]

    def decode(buf: Buffer, pos: int, end: int) -> Any:
        vals: list[Any] = []
        for step in req_steps:
            pos = step(buf, pos, end, vals)
        for step in opt_steps:  # an older sender stops early: the defaults fill in
            if pos >= end:
                break
            pos = step(buf, pos, end, vals)
        return cls(*vals)

    return decode


def _nested_pair(cls: type) -> tuple[Encoder, Decoder]:
    codec = compile_struct(cls)
    return codec.encode, codec.decode


def compile_struct(cls: type) -> Codec:
    """The (cached) codec of a dataclass; TypeError if a field has no wire encoding."""
    if cls in _CODECS:
        return _CODECS[cls]
    if cls in _BUILDING:
        raise TypeError(f"{cls.__name__} contains itself; recursive structs are not supported")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    _BUILDING.add(cls)
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
        specs: list[_Spec] = []
        required = 0
        for f in dataclasses.fields(cls):
            if not f.init or f.kw_only:
                raise TypeError(f"{cls.__name__}.{f.name}: wire fields must be positional")
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                required = len(specs) + 1
            specs.append((f.name, field_codec(hints[f.name], _nested_pair)))
        codec = Codec(*_build_encoder(specs), _build_decoder(cls, specs, required))
    finally:
        _BUILDING.discard(cls)
    _CODECS[cls] = codec
    return codec


def _as_dataclass(cls: type[_T]) -> type[_T]:
    if "__dataclass_fields__" not in cls.__dict__:
        return dataclasses.dataclass(frozen=True, slots=True)(cls)
    if not getattr(cls, "__dataclass_params__").frozen:  # noqa: B009 - private dataclass API
        raise TypeError(f"{cls.__name__} must be a frozen dataclass")
    return cls


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def struct(cls: type[_T]) -> type[_T]:
    """Make ``cls`` a frozen, slotted dataclass usable as a nested payload field."""
    cls = _as_dataclass(cls)
    compile_struct(cls)
    return cls


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def message(msg_type: int) -> Callable[[type[_T]], type[_T]]:
    """Register a payload class under a wire type number; a duplicate fails at import."""
    if not 0 <= msg_type <= 0xFFFF:
        raise ValueError(f"message type {msg_type:#x} does not fit in 16 bits")

    def register(cls: type[_T]) -> type[_T]:
        if msg_type in MESSAGE_TYPES:
            known = MESSAGE_TYPES[msg_type].__qualname__
            raise ValueError(f"message type {msg_type:#06x} is already {known}")
        cls = _as_dataclass(cls)
        if cls in ENCODERS:
            raise ValueError(f"{cls.__qualname__} is already type {ENCODERS[cls][0]:#06x}")
        codec = compile_struct(cls)
        MESSAGE_TYPES[msg_type] = cls
        ENCODERS[cls] = (msg_type, codec.fill)
        DECODERS[msg_type] = codec.decode
        return cls

    return register


def message_class(msg_type: int) -> type | None:
    """The payload class registered for a type number, if this version knows it."""
    return MESSAGE_TYPES.get(msg_type)


def type_of(cls: type) -> int | None:
    """The type number a payload class is registered under."""
    entry = ENCODERS.get(cls)
    return None if entry is None else entry[0]


def encode_payload(obj: object) -> bytes:
    """Encode a dataclass instance's fields alone, without a header."""
    try:
        return compile_struct(type(obj)).encode(obj)
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"cannot encode {type(obj).__name__}: {exc!r}") from exc


def decode_payload(cls: type[_T], data: bytes | bytearray | memoryview) -> _T:
    """Decode what ``encode_payload`` produced; bytes after the known fields are ignored."""
    try:
        with memoryview(data) as view:  # released on exit: errors do not pin the caller's buffer
            buf = as_buffer(view)
            return typing.cast(_T, compile_struct(cls).decode(buf, 0, len(buf)))
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"invalid {cls.__name__} payload: {exc!r}") from exc
