"""Schema-driven payload codec and the message-type registry.

A payload class is a frozen record (``record.frozen``: a frozen, slotted class typed as
a frozen dataclass) whose annotations name wire encodings (``U32``, ``str``,
``list[KeyValue]`` ...).  ``@message``/``@struct`` check the annotations when the class
is declared; its encoder and decoder closures are built on first use, with runs of
consecutive fixed-size fields merged into one ``struct.Struct``, so encoding a message
costs a few C calls, not a walk over the annotations, and importing the catalog costs
almost nothing.  Fields with defaults are optional on the wire: an older sender that
stops early gets them defaulted; bytes after the last known field are ignored.
"""

from __future__ import annotations

import builtins
import operator
import struct as _struct
import sys
from _thread import RLock

from ctdb.errors import ProtocolError
from ctdb.protocol.fields import (
    F64,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Fixed,
    Var,
    build,
    check_bools,
    classify,
    short,
)
from ctdb.record import fields_of, frozen, is_record, plain_class

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Callable
    from dataclasses import field as _field
    from typing import Any, TypeVar, dataclass_transform

    from ctdb.protocol.fields import Buffer, Decoder, Encoder, FieldDec, FieldEnc, Kind

    _T = TypeVar("_T")
else:
    _field = None

    def dataclass_transform(**_kwargs):
        return lambda func: func


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


@frozen
class Codec:
    """The compiled closures of one struct."""

    fill: FieldEnc  # (obj, out): append the encoded fields to out
    encode: Encoder  # obj -> the encoded fields as one bytes
    decode: Decoder  # (buf, pos, end) -> obj, ignoring bytes after the known fields


MESSAGE_TYPES: dict[int, type] = {}
# A registered class's entry holds a stand-in that compiles it on first use and puts the
# compiled closure here instead; DECODERS only has compiled classes (see ``decoder``).
ENCODERS: dict[type, tuple[int, FieldEnc]] = {}  # payload class -> (type, fill)
DECODERS: dict[int, Decoder] = {}
_CODECS: dict[type, Codec] = {}
_CHECKED: set[type] = set()  # classes whose annotations are known to be encodable
_BUILDING: set[type] = set()
_LOCK = RLock()  # compiling happens on first use, maybe in several threads at once


def as_buffer(data: bytes | bytearray | memoryview) -> Buffer:
    """Bytes or a flat byte memoryview, so slicing is cheap and indexes are byte offsets."""
    if type(data) is bytes:
        return data
    view = data if type(data) is memoryview else memoryview(data)
    if view.format != "B" or view.ndim != 1 or not view.c_contiguous:
        return view.tobytes()
    return view


class _Run:
    """Consecutive fixed-size fields, handled by one ``struct.Struct``."""

    __slots__ = ("codes", "names")

    def __init__(self, names: list[str], codes: list[str]) -> None:
        self.names = names
        self.codes = codes

    def getter(self) -> Callable[[Any], tuple[Any, ...]]:
        if len(self.names) == 1:
            name = self.names[0]
            return lambda obj: (getattr(obj, name),)
        return operator.attrgetter(*self.names)

    def packer(self) -> Callable[..., bytes]:
        return _struct.Struct(">" + "".join(self.codes)).pack


if TYPE_CHECKING:
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


def _is_struct(cls: type) -> bool:
    """Whether ``cls`` can be a nested field; its own fields are checked here too."""
    if not (is_record(cls) or hasattr(cls, "__dataclass_fields__")):
        return False
    _check(cls)
    return True


def _resolve(annotation: Any, ns: dict[str, Any]) -> Any:
    """An annotation as an object, evaluating strings in the module namespace ``ns``.

    The usual shapes (a name, ``list[...]``) are looked up directly; anything else is
    evaluated as ``typing.get_type_hints`` would.
    """
    if type(annotation) is not str:
        return annotation
    text = annotation.strip()
    if text.isidentifier():
        if text in ns:
            return ns[text]
        if hasattr(builtins, text):
            return getattr(builtins, text)
        raise NameError(f"name {text!r} is not defined")
    if text.startswith("list[") and text.endswith("]"):
        return list[_resolve(text[5:-1], ns)]  # type: ignore[misc]
    return eval(text, ns)  # noqa: S307 - an annotation of the class's own module


def _wire_fields(cls: type) -> list[tuple[str, Any, bool, dict[str, Any]]]:
    """(name, annotation, required, namespace to resolve it in) for each field."""
    if is_record(cls):
        home = cls.__module__
        ns = _namespace(home)
        return [
            (f.name, f.annotation, f.required, ns if f.module == home else _namespace(f.module))
            for f in fields_of(cls)
        ]
    dataclasses = sys.modules["dataclasses"]  # cls is a dataclass, so it is imported
    ns = _namespace(cls.__module__)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init or f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: wire fields must be positional")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append((f.name, f.type, required, ns))
    return out


def _namespace(module: str) -> dict[str, Any]:
    mod = sys.modules.get(module)
    return {} if mod is None else mod.__dict__


def _kinds(cls: type) -> tuple[list[tuple[str, Kind]], int]:
    """The kinds of a struct's fields and how many of them are required.

    TypeError if a field has no wire encoding; NameError if an annotation names
    nothing (a struct must be declared before the classes that contain it).
    """
    if cls in _BUILDING:
        raise TypeError(f"{cls.__name__} contains itself; recursive structs are not supported")
    _BUILDING.add(cls)
    try:
        kinds: list[tuple[str, Kind]] = []
        required = 0
        for name, annotation, needed, ns in _wire_fields(cls):
            if needed:
                required = len(kinds) + 1
            kinds.append((name, classify(_resolve(annotation, ns), _is_struct)))
    finally:
        _BUILDING.discard(cls)
    return kinds, required


def _check(cls: type) -> None:
    """Fail now, at declaration, if ``cls`` could not be encoded (see ``_kinds``).

    Nothing is kept but the fact: ``compile_struct`` works the kinds out again on first
    use, so a catalog of unused messages costs no memory (nor garbage collector time).
    """
    if cls not in _CHECKED:
        with _LOCK:
            _kinds(cls)
            _CHECKED.add(cls)


def compile_struct(cls: type) -> Codec:
    """The (cached) codec of a struct or message class; TypeError if it is neither.

    Built on first use; a registered message's entries in ENCODERS and DECODERS are
    replaced by the compiled closures at the same time.
    """
    codec = _CODECS.get(cls)
    if codec is not None:
        return codec
    with _LOCK:
        codec = _CODECS.get(cls)
        if codec is not None:
            return codec
        if not (is_record(cls) or hasattr(cls, "__dataclass_fields__")):
            raise TypeError(f"{cls.__name__} is not a struct or message class")
        kinds, required = _kinds(cls)
        _CHECKED.add(cls)
        specs = [(name, build(kind, _nested_pair)) for name, kind in kinds]
        codec = Codec(*_build_encoder(specs), _build_decoder(cls, specs, required))
        _CODECS[cls] = codec
        entry = ENCODERS.get(cls)
        if entry is not None:
            ENCODERS[cls] = (entry[0], codec.fill)
            DECODERS[entry[0]] = codec.decode
        return codec


def _as_record(cls: type[_T]) -> type[_T]:
    if "__dataclass_fields__" in cls.__dict__:
        if not getattr(cls, "__dataclass_params__").frozen:  # noqa: B009 - private dataclass API
            raise TypeError(f"{cls.__name__} must be a frozen dataclass")
        return cls
    if plain_class(cls):
        return frozen(cls)
    # A dataclass base, __post_init__, InitVar, field options: only dataclasses does
    # those (and the class itself already imported it).
    import dataclasses  # noqa: PLC0415

    return dataclasses.dataclass(frozen=True, slots=True)(cls)


def _fill_first_use(obj: Any, out: list[bytes]) -> None:
    """ENCODERS' stand-in for a class not compiled yet: compile it, then encode."""
    compile_struct(type(obj)).fill(obj, out)


def decoder(msg_type: int) -> Decoder | None:
    """The decoder of a registered type (compiled now if need be), None if unknown.

    For callers that missed in DECODERS, which holds compiled classes only.
    """
    cls = MESSAGE_TYPES.get(msg_type)
    return None if cls is None else compile_struct(cls).decode


@dataclass_transform(frozen_default=True, field_specifiers=(_field,))
def struct(cls: type[_T]) -> type[_T]:
    """Make ``cls`` a frozen, slotted record usable as a nested payload field."""
    cls = _as_record(cls)
    _check(cls)
    return cls


@dataclass_transform(frozen_default=True, field_specifiers=(_field,))
def message(msg_type: int) -> Callable[[type[_T]], type[_T]]:
    """Register a payload class under a wire type number; a duplicate fails at import."""
    if not 0 <= msg_type <= 0xFFFF:
        raise ValueError(f"message type {msg_type:#x} does not fit in 16 bits")

    def register(cls: type[_T]) -> type[_T]:
        if msg_type in MESSAGE_TYPES:
            known = MESSAGE_TYPES[msg_type].__qualname__
            raise ValueError(f"message type {msg_type:#06x} is already {known}")
        cls = _as_record(cls)
        if cls in ENCODERS:
            raise ValueError(f"{cls.__qualname__} is already type {ENCODERS[cls][0]:#06x}")
        _check(cls)
        MESSAGE_TYPES[msg_type] = cls
        ENCODERS[cls] = (msg_type, _fill_first_use)
        return cls

    return register


def message_class(msg_type: int) -> type | None:
    """The payload class registered for a type number, if this version knows it."""
    return MESSAGE_TYPES.get(msg_type)


def type_of(cls: type) -> int | None:
    """The type number a payload class is registered under."""
    entry = ENCODERS.get(cls)
    return None if entry is None else entry[0]


def type_number(cls: type) -> int:
    """The type number of a registered message class; TypeError for anything else."""
    number = type_of(cls)
    if number is None:
        raise TypeError(f"{cls.__name__} is not a registered message")
    return number


def encode_payload(obj: object) -> bytes:
    """Encode a struct or message's fields alone, without a header."""
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
            obj: _T = compile_struct(cls).decode(buf, 0, len(buf))
            return obj
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"invalid {cls.__name__} payload: {exc!r}") from exc
