"""Wire encodings of single fields, chosen from a field's type annotation.

Every decoder has the shape ``(buf, pos, end, out) -> next_pos``: it appends the value
to ``out`` so lists and structs are built without intermediate tuples, and it checks
each length against ``end`` before slicing or allocating.
"""

from __future__ import annotations

import dataclasses
import struct
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from ctdb.errors import ProtocolError


@dataclasses.dataclass(frozen=True, slots=True)
class Fixed:
    """Annotation marker: a fixed-size big-endian scalar with this ``struct`` code."""

    code: str


U8 = Annotated[int, Fixed("B")]
U16 = Annotated[int, Fixed("H")]
U32 = Annotated[int, Fixed("I")]
U64 = Annotated[int, Fixed("Q")]
I32 = Annotated[int, Fixed("i")]
I64 = Annotated[int, Fixed("q")]
F64 = Annotated[float, Fixed("d")]
BOOL = Fixed("?")  # encoded as one byte, 0 or 1; anything else is refused on decode

Buffer = bytes | memoryview
FieldEnc = Callable[[Any, list[bytes]], None]
FieldDec = Callable[[Buffer, int, int, list[Any]], int]
Encoder = Callable[[Any], bytes]
Decoder = Callable[[Buffer, int, int], Any]  # a whole struct from buf[pos:end]
Compiler = Callable[[type], tuple[Encoder, Decoder]]

_U32 = struct.Struct(">I")
_u32 = _U32.pack
_u32_from = _U32.unpack_from


@dataclasses.dataclass(frozen=True, slots=True)
class Var:
    """A variable-size field: its closures and the fewest bytes it can occupy."""

    enc: FieldEnc
    dec: FieldDec
    min_size: int


def short(what: str, need: int, have: int) -> ProtocolError:
    return ProtocolError(f"{what} needs {need} bytes, {have} left")


def check_bools(values: list[Any], indices: Iterable[int], where: str) -> None:
    """Turn the 0/1 bytes at ``indices`` into bools in place."""
    for i in indices:
        if values[i] > 1:
            raise ProtocolError(f"{where}: bool byte is {values[i]}, not 0 or 1")
        values[i] = values[i] == 1


def _enc_str(value: Any, out: list[bytes]) -> None:
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    raw = value.encode()
    out += (_u32(len(raw)), raw)


def _dec_str(buf: Buffer, pos: int, end: int, out: list[Any]) -> int:
    start = pos + 4
    if start > end:
        raise short("string length", 4, end - pos)
    stop: int = start + _u32_from(buf, pos)[0]
    if stop > end:
        raise short("string", stop - start, end - start)
    out.append(str(buf[start:stop], "utf-8"))
    return stop


def _enc_bytes(value: Any, out: list[bytes]) -> None:
    if type(value) is not bytes:
        value = bytes(memoryview(value))  # a str or int fails here, never silently converts
    out += (_u32(len(value)), value)


def _dec_bytes(buf: Buffer, pos: int, end: int, out: list[Any]) -> int:
    start = pos + 4
    if start > end:
        raise short("bytes length", 4, end - pos)
    stop: int = start + _u32_from(buf, pos)[0]
    if stop > end:
        raise short("bytes", stop - start, end - start)
    out.append(bytes(buf[start:stop]))
    return stop


def _count(buf: Buffer, pos: int, end: int, item_size: int) -> int:
    """Read a list count and refuse it unless that many items could fit."""
    if pos + 4 > end:
        raise short("list count", 4, end - pos)
    count: int = _u32_from(buf, pos)[0]
    if count * item_size > end - pos - 4:
        raise ProtocolError(f"list of {count} items cannot fit in {end - pos - 4} bytes")
    return count


def _check_list(value: Any) -> None:
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected list, got {type(value).__name__}")


def _fixed_list(item: Fixed) -> Var:
    code = item.code
    dcode = "B" if code == "?" else code
    size = struct.calcsize(">" + code)

    def enc(value: Any, out: list[bytes]) -> None:
        _check_list(value)
        out += (_u32(len(value)), struct.pack(f">{len(value)}{code}", *value))

    def dec(buf: Buffer, pos: int, end: int, out: list[Any]) -> int:
        count = _count(buf, pos, end, size)
        items = list(struct.unpack_from(f">{count}{dcode}", buf, pos + 4)) if count else []
        if code == "?":
            check_bools(items, range(count), "list[bool]")
        out.append(items)
        return pos + 4 + count * size

    return Var(enc, dec, 4)


def _var_list(item: Var) -> Var:
    ienc, idec, isize = item.enc, item.dec, item.min_size

    def enc(value: Any, out: list[bytes]) -> None:
        _check_list(value)
        out.append(_u32(len(value)))
        for x in value:
            ienc(x, out)

    def dec(buf: Buffer, pos: int, end: int, out: list[Any]) -> int:
        count = _count(buf, pos, end, isize)
        pos += 4
        items: list[Any] = []
        for _ in range(count):
            pos = idec(buf, pos, end, items)
        out.append(items)
        return pos

    return Var(enc, dec, 4)


def _nested(cls: type, compile_struct: Compiler) -> Var:
    """A struct inside a payload travels length-prefixed, so it can grow like a payload."""
    cenc, cdec = compile_struct(cls)
    name = cls.__name__

    def enc(value: Any, out: list[bytes]) -> None:
        if type(value) is not cls:
            raise TypeError(f"expected {name}, got {type(value).__name__}")
        raw = cenc(value)
        out += (_u32(len(raw)), raw)

    def dec(buf: Buffer, pos: int, end: int, out: list[Any]) -> int:
        start = pos + 4
        if start > end:
            raise short(f"{name} length", 4, end - pos)
        stop: int = start + _u32_from(buf, pos)[0]
        if stop > end:
            raise short(name, stop - start, end - start)
        out.append(cdec(buf, start, stop))
        return stop

    return Var(enc, dec, 4)


def field_codec(hint: Any, compile_struct: Compiler) -> Fixed | Var:
    """The codec for one resolved annotation; nested dataclasses go to ``compile_struct``."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extras = typing.get_args(hint)
        fixed = [e for e in extras if isinstance(e, Fixed)]
        return fixed[0] if fixed else field_codec(base, compile_struct)
    if hint is bool:
        return BOOL
    if hint is str:
        return Var(_enc_str, _dec_str, 4)
    if hint is bytes:
        return Var(_enc_bytes, _dec_bytes, 4)
    if origin is list:
        (item,) = typing.get_args(hint)
        codec = field_codec(item, compile_struct)
        return _fixed_list(codec) if isinstance(codec, Fixed) else _var_list(codec)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _nested(hint, compile_struct)
    raise TypeError(
        f"unsupported field type {hint!r}: use U8/U16/U32/U64/I32/I64/F64, bool, str, "
        "bytes, list[...] or a dataclass"
    )
