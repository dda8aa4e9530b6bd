"""Wire encodings of single fields, chosen from a field's type annotation.

Every decoder has the shape ``(buf, pos, end, out) -> next_pos``: it appends the value
to ``out`` so lists and structs are built without intermediate tuples, and it checks
each length against ``end`` before slicing or allocating.

A field's annotation is first reduced to a ``Kind`` (``classify``, which also rejects
unsupported types), when its class is declared; the closures are built from the kind
(``build``) when the class is first encoded or decoded.
"""

from __future__ import annotations

import struct

from ctdb.errors import ProtocolError
from ctdb.record import frozen

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Annotated, Any


@frozen
class Fixed:
    """Annotation marker: a fixed-size big-endian scalar with this ``struct`` code."""

    code: str


# For type checkers these are ``int`` (or ``float``) annotated with their encoding; at run
# time the annotation is the marker itself, so no ``typing`` is needed to read it.
if TYPE_CHECKING:
    U8 = Annotated[int, Fixed("B")]
    U16 = Annotated[int, Fixed("H")]
    U32 = Annotated[int, Fixed("I")]
    U64 = Annotated[int, Fixed("Q")]
    I32 = Annotated[int, Fixed("i")]
    I64 = Annotated[int, Fixed("q")]
    F64 = Annotated[float, Fixed("d")]
else:
    U8 = Fixed("B")
    U16 = Fixed("H")
    U32 = Fixed("I")
    U64 = Fixed("Q")
    I32 = Fixed("i")
    I64 = Fixed("q")
    F64 = Fixed("d")
BOOL = Fixed("?")  # encoded as one byte, 0 or 1; anything else is refused on decode

Buffer = bytes | memoryview
if TYPE_CHECKING:
    FieldEnc = Callable[[Any, list[bytes]], None]
    FieldDec = Callable[[Buffer, int, int, list[Any]], int]
    Encoder = Callable[[Any], bytes]
    Decoder = Callable[[Buffer, int, int], Any]  # a whole struct from buf[pos:end]
    Compiler = Callable[[type], tuple[Encoder, Decoder]]
    # Fixed, str, bytes, a struct class, or a 1-tuple: a list of that kind.
    Kind = Fixed | type | tuple["Kind"]

_U32 = struct.Struct(">I")
_u32 = _U32.pack
_u32_from = _U32.unpack_from


@frozen
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


def classify(hint: Any, is_struct: Callable[[type], bool]) -> Kind:
    """The kind of one resolved annotation, or TypeError if it has no wire encoding."""
    if isinstance(hint, Fixed):
        return hint
    if hint is bool:
        return BOOL
    if hint is str or hint is bytes or (isinstance(hint, type) and is_struct(hint)):
        kind: Kind = hint
        return kind
    if not isinstance(hint, type):
        if getattr(hint, "__origin__", None) is list:  # list[...] or typing.List[...]
            (item,) = hint.__args__
            return (classify(item, is_struct),)
        metadata = getattr(hint, "__metadata__", None)  # typing.Annotated, read without typing
        if metadata is not None:
            fixed = [e for e in metadata if isinstance(e, Fixed)]
            return fixed[0] if fixed else classify(hint.__origin__, is_struct)
    raise TypeError(
        f"unsupported field type {hint!r}: use U8/U16/U32/U64/I32/I64/F64, bool, str, "
        "bytes, list[...] or a struct"
    )


_STR = Var(_enc_str, _dec_str, 4)
_BYTES = Var(_enc_bytes, _dec_bytes, 4)


def build(kind: Kind, compile_struct: Compiler) -> Fixed | Var:
    """The codec of one field kind; nested structs go to ``compile_struct``."""
    if isinstance(kind, Fixed):
        return kind
    if isinstance(kind, tuple):
        item = build(kind[0], compile_struct)
        return _fixed_list(item) if isinstance(item, Fixed) else _var_list(item)
    if kind is str:
        return _STR
    if kind is bytes:
        return _BYTES
    return _nested(kind, compile_struct)
