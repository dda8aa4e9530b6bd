"""Frozen, slotted record classes built without ``dataclasses``.

``@dataclasses.dataclass(frozen=True, slots=True)`` execs generated source for each method
of each class and builds every class twice, and importing ``dataclasses`` pulls in
``inspect``; for the protocol's payload classes that was most of the CLI's start-up.
``frozen`` builds the same kind of class directly:

* ``__slots__`` holds the fields, so the class is created once, with its final layout;
* ``__eq__``, ``__hash__``, ``__repr__``, ``__setattr__``, ``__delattr__`` and the pickle
  hooks are shared functions that read the class's field tuple;
* ``__init__`` copies a precompiled template's code object with the field names as its
  parameter names and the slots' setters as its closure, so positional and keyword
  calls, defaults and argument errors behave exactly as in a written-out ``__init__``,
  without generating or exec'ing source.  Classes with more fields than the templates
  cover, or with a ``default_factory``, get a generic ``__init__`` with the same rules.

Instances behave as a frozen dataclass's: assignment raises
``dataclasses.FrozenInstanceError``, equality compares the fields of same-class
instances, ``__match_args__`` lists the fields.  ``dataclasses.fields`` does not apply
(see ``fields_of``).  For type checkers ``frozen`` is a ``dataclass_transform``.
"""

from __future__ import annotations

import sys
from operator import attrgetter
from types import CellType, FunctionType, GenericAlias

TYPE_CHECKING = False  # typing is not imported at run time: it alone costs the CLI ~5 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from dataclasses import field as _field
    from typing import Any, NoReturn, TypeVar, dataclass_transform

    _T = TypeVar("_T")
else:
    _field = None

    def dataclass_transform(**_kwargs):
        return lambda func: func


__all__ = ["MISSING", "RecordField", "fields_of", "frozen", "is_record", "plain_class"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # no default (the record counterpart of dataclasses.MISSING)


class RecordField:
    """One field of a record: name, annotation as written, default or default factory."""

    __slots__ = ("annotation", "default", "factory", "module", "name")

    def __init__(self, name: str, annotation: Any, default: Any, factory: Any, module: str):
        self.name = name
        self.annotation = annotation  # a string under ``from __future__ import annotations``
        self.default = default
        self.factory = factory
        self.module = module  # where the annotation is resolved

    @property
    def required(self) -> bool:
        return self.default is MISSING and self.factory is MISSING

    def __repr__(self) -> str:
        return f"RecordField({self.name!r}, {self.annotation!r})"


def is_record(cls: object) -> bool:
    """Whether ``cls`` is a class built by ``frozen`` (or a subclass of one)."""
    return isinstance(cls, type) and hasattr(cls, "__record_fields__")


def fields_of(cls: type) -> tuple[RecordField, ...]:
    """The fields of a record class, in ``__init__`` order."""
    fields: tuple[RecordField, ...] = cls.__record_fields__  # type: ignore[attr-defined]
    return fields


# --- the shared methods -----------------------------------------------------------------


def _frozen_error(message: str) -> Exception:
    # Only on the error path: importing dataclasses costs ~10 ms, and callers may catch
    # dataclasses.FrozenInstanceError exactly as before.
    from dataclasses import FrozenInstanceError  # noqa: PLC0415

    return FrozenInstanceError(message)


def _record_setattr(self: Any, name: str, value: Any) -> None:
    cls = type(self)
    if "__record_fields__" in cls.__dict__ or name in cls.__record_names__:
        raise _frozen_error(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)  # an undecorated subclass's own attributes


def _record_delattr(self: Any, name: str) -> None:
    cls = type(self)
    if "__record_fields__" in cls.__dict__ or name in cls.__record_names__:
        raise _frozen_error(f"cannot delete field {name!r}")
    object.__delattr__(self, name)


def _record_eq(self: Any, other: Any) -> object:
    if other.__class__ is self.__class__:
        key = self.__record_key__
        same: bool = key(self) == key(other)
        return same
    return NotImplemented


def _record_hash(self: Any) -> int:
    return hash(self.__record_key__(self))


def _record_repr(self: Any) -> str:
    body = ", ".join([f"{name}={getattr(self, name)!r}" for name in self.__record_names__])
    return f"{self.__class__.__qualname__}({body})"


def _record_getstate(self: Any) -> list[Any]:
    return [getattr(self, name) for name in self.__record_names__]


def _record_setstate(self: Any, state: list[Any]) -> None:
    for name, value in zip(self.__record_names__, state, strict=True):
        object.__setattr__(self, name, value)


_SHARED = {
    "__eq__": _record_eq,
    "__repr__": _record_repr,
    "__getstate__": _record_getstate,
    "__setstate__": _record_setstate,
}


def _no_fields(obj: object) -> tuple[()]:
    return ()


# The ``__record_key__`` of a record without fields; the others get an attrgetter, which
# (unlike a function) a class attribute returns unbound.  One field: the value itself.
_NO_FIELDS_KEY = staticmethod(_no_fields)


# --- __init__ -----------------------------------------------------------------------------


_CELL: Any = None  # the templates' closure cells, typed for mypy


def _templates() -> tuple[Any, ...]:
    """Code objects of ``__init__(self, a, b, ...)`` for 0 to 8 fields.

    ``_s0`` ... are closure cells; each record's copy gets its slots' setters there and
    its field names as parameter names (``code.replace``), so nothing is compiled.
    """
    _s0 = _s1 = _s2 = _s3 = _s4 = _s5 = _s6 = _s7 = _CELL

    def init0(self: Any) -> None:
        pass

    def init1(self: Any, a: Any) -> None:
        _s0(self, a)

    def init2(self: Any, a: Any, b: Any) -> None:
        _s0(self, a)
        _s1(self, b)

    def init3(self: Any, a: Any, b: Any, c: Any) -> None:
        _s0(self, a)
        _s1(self, b)
        _s2(self, c)

    def init4(self: Any, a: Any, b: Any, c: Any, d: Any) -> None:
        _s0(self, a)
        _s1(self, b)
        _s2(self, c)
        _s3(self, d)

    def init5(  # noqa: PLR0917
        self: Any, a: Any, b: Any, c: Any, d: Any, e: Any
    ) -> None:
        _s0(self, a)
        _s1(self, b)
        _s2(self, c)
        _s3(self, d)
        _s4(self, e)

    def init6(  # noqa: PLR0917
        self: Any, a: Any, b: Any, c: Any, d: Any, e: Any, f: Any
    ) -> None:
        _s0(self, a)
        _s1(self, b)
        _s2(self, c)
        _s3(self, d)
        _s4(self, e)
        _s5(self, f)

    def init7(  # noqa: PLR0917
        self: Any, a: Any, b: Any, c: Any, d: Any, e: Any, f: Any, g: Any
    ) -> None:
        _s0(self, a)
        _s1(self, b)
        _s2(self, c)
        _s3(self, d)
        _s4(self, e)
        _s5(self, f)
        _s6(self, g)

    def init8(  # noqa: PLR0917
        self: Any, a: Any, b: Any, c: Any, d: Any, e: Any, f: Any, g: Any, h: Any
    ) -> None:
        _s0(self, a)
        _s1(self, b)
        _s2(self, c)
        _s3(self, d)
        _s4(self, e)
        _s5(self, f)
        _s6(self, g)
        _s7(self, h)

    inits = (init0, init1, init2, init3, init4, init5, init6, init7, init8)
    return tuple(init.__code__ for init in inits)


_INIT_CODES = _templates()
# A copy's closure is the cells in field order, which is how the compiler lays them out.
if any(code.co_freevars != tuple(f"_s{i}" for i in range(n)) for n, code in enumerate(_INIT_CODES)):
    raise RuntimeError("unexpected closure layout of the record __init__ templates")


class _Signature:
    """``__signature__`` of a record with a generic ``__init__``, made when asked for.

    ``inspect.signature`` reads it from the class, so ``help()`` shows the fields rather
    than ``(*args, **kwargs)``; building it needs ``inspect``, hence not at import.
    """

    def __get__(self, obj: object, cls: type) -> Any:
        import inspect  # noqa: PLC0415 - only for introspection

        if obj is not None:
            raise AttributeError("__signature__")
        param = inspect.Parameter
        params = [
            param(
                f.name,
                param.POSITIONAL_OR_KEYWORD,
                default=_FACTORY if f.factory is not MISSING else f.default,
                annotation=f.annotation,
            )
            if not f.required
            else param(f.name, param.POSITIONAL_OR_KEYWORD, annotation=f.annotation)
            for f in fields_of(cls)
        ]
        return inspect.Signature(params, return_annotation=None)


class _Factory:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def _generic_init(
    qualname: str, fields: tuple[RecordField, ...], cells: list[Any]
) -> Callable[..., None]:
    """``__init__(self, *args, **kwargs)`` binding arguments as Python would."""
    names = tuple(f.name for f in fields)
    count = len(names)
    where = f"{qualname}()"

    least = sum(f.required for f in fields)

    def fail(args: tuple[Any, ...], kwargs: dict[str, Any]) -> NoReturn:
        if len(args) > count:
            takes = f"{count + 1}" if least == count else f"from {least + 1} to {count + 1}"
            raise TypeError(
                f"{where} takes {takes} positional arguments but {len(args) + 1} were given"
            )
        for name in kwargs:
            if name not in names:
                raise TypeError(f"{where} got an unexpected keyword argument {name!r}")
            if names.index(name) < len(args):
                raise TypeError(f"{where} got multiple values for argument {name!r}")
        missing = [f.name for f in fields[len(args) :] if f.required and f.name not in kwargs]
        quoted = [repr(m) for m in missing]
        if len(quoted) <= 2:
            listed = " and ".join(quoted)
        else:
            listed = ", ".join(quoted[:-1]) + ", and " + quoted[-1]
        plural = "s" if len(missing) > 1 else ""
        raise TypeError(f"{where} missing {len(missing)} required positional argument{plural}: "
                        f"{listed}")  # fmt: skip

    def __init__(record_self: Any, /, *args: Any, **kwargs: Any) -> None:
        if len(args) > count:
            fail(args, kwargs)
        values = list(args)
        used = 0
        for field in fields[len(args) :]:
            name = field.name
            if name in kwargs:
                values.append(kwargs[name])
                used += 1
            elif field.factory is not MISSING:
                values.append(field.factory())
            elif field.default is not MISSING:
                values.append(field.default)
            else:
                fail(args, kwargs)
        if used != len(kwargs):
            fail(args, kwargs)
        for cell, value in zip(cells, values, strict=True):
            cell.cell_contents(record_self, value)

    __init__.__qualname__ = qualname
    return __init__


# --- building a class ---------------------------------------------------------------------


def _module_dict(module: str) -> dict[str, Any]:
    mod = sys.modules.get(module)
    return {} if mod is None else mod.__dict__


def _own_annotations(cls: type) -> dict[str, Any]:
    # The class's own annotations; inspect.get_annotations would cost inspect's import.
    annotations: dict[str, Any] = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
    return annotations


def _names_special(annotation: Any, module: str, candidates: tuple[Any, ...]) -> bool:
    """Whether an annotation (maybe a string) is, or subscripts, one of ``candidates``."""
    if isinstance(annotation, str):
        head = annotation.split("[", 1)[0].strip()
        prefix, _, name = head.rpartition(".")
        ns = _module_dict(module)
        target = getattr(ns.get(prefix), name, None) if prefix else ns.get(name)
        return any(target is c for c in candidates)
    origin = getattr(annotation, "__origin__", annotation)
    return any(annotation is c or origin is c or type(annotation) is c for c in candidates)


def plain_class(cls: type) -> bool:
    """Whether ``frozen`` can build ``cls``; if not, ``dataclasses`` has to.

    That is: no dataclass base, no ``__post_init__``, no ``InitVar``/``KW_ONLY``
    annotations, and ``dataclasses.field`` used for ``default``/``default_factory`` only.
    """
    for base in cls.__mro__:  # (not hasattr: a miss on a class formats an exception)
        if "__dataclass_fields__" in base.__dict__ or "__post_init__" in base.__dict__:
            return False
    dc = sys.modules.get("dataclasses")
    if dc is None:  # without dataclasses none of its special forms can be in the class
        return True
    special = (dc.InitVar, dc.KW_ONLY)
    for name, annotation in _own_annotations(cls).items():
        if _names_special(annotation, cls.__module__, special):
            return False
        value = cls.__dict__.get(name)
        if isinstance(value, dc.Field) and (
            not value.init or not value.repr or value.hash is not None or not value.compare
            or value.metadata or value.kw_only not in (dc.MISSING, False)
        ):  # fmt: skip
            return False
    return True


def _own_fields(cls: type) -> list[RecordField]:
    typing = sys.modules.get("typing")  # a ClassVar annotation means typing was imported
    classvar = () if typing is None else (typing.ClassVar,)
    dc = sys.modules.get("dataclasses")
    module = cls.__module__
    out = []
    for name, annotation in _own_annotations(cls).items():
        if classvar and _names_special(annotation, module, classvar):
            continue
        default = cls.__dict__.get(name, MISSING)
        factory = MISSING
        if dc is not None and isinstance(default, dc.Field):
            factory = MISSING if default.default_factory is dc.MISSING else default.default_factory
            default = MISSING if default.default is dc.MISSING else default.default
        if default is not MISSING and type(default).__hash__ is None:  # dataclasses' rule
            raise ValueError(
                f"mutable default {type(default)} for field {name} is not allowed: "
                "use default_factory"
            )
        out.append(RecordField(name, annotation, default, factory, module))
    return out


def _fields(cls: type) -> tuple[tuple[RecordField, ...], tuple[str, ...]]:
    """All fields (record bases' first, a redefinition keeps its place) and new slots."""
    own = _own_fields(cls)
    bases = cls.__mro__[-2:0:-1]  # base classes, object and cls excluded, root first
    inherited = [f for base in bases for f in base.__dict__.get("__record_fields__", ())]
    if inherited:
        by_name = {f.name: f for f in inherited}
        slots = tuple([f.name for f in own if f.name not in by_name])
        by_name.update((f.name, f) for f in own)
        fields = tuple(by_name.values())
    else:
        fields = tuple(own)
        slots = tuple([f.name for f in own])
    return fields, slots


def _init(
    cls: type, fields: tuple[RecordField, ...], names: tuple[str, ...], cells: list[Any]
) -> tuple[Callable[..., None], bool]:
    """The ``__init__`` of a record, and whether it is the generic one.

    ``cells`` receive the slots' setters once the class exists.
    """
    qualname = f"{cls.__qualname__}.__init__"
    defaults = []
    template = len(names) < len(_INIT_CODES)
    for field in fields:
        if field.factory is not MISSING:
            template = False
        if field.default is not MISSING or field.factory is not MISSING:
            defaults.append(field.default)
        elif defaults:
            raise TypeError(f"non-default argument {field.name!r} follows default argument")
    if template:
        code = _INIT_CODES[len(names)].replace(
            co_varnames=("__record_self__" if "self" in names else "self", *names),
            co_name="__init__",
            co_qualname=qualname,
        )
        copy = FunctionType(
            code, globals(), "__init__", tuple(defaults) or None, tuple(cells) or None
        )
        copy.__annotations__ = {f.name: f.annotation for f in fields}
        copy.__annotations__["return"] = None
        init: Callable[..., None] = copy
    else:
        init = _generic_init(qualname, fields, cells)
    init.__module__ = cls.__module__
    return init, not template


def _signature_text(fields: tuple[RecordField, ...]) -> str:
    """``(a: 'U32', b: int = 0)``, as ``str(inspect.signature(...))`` writes it."""
    parts = []
    for field in fields:
        annotation = field.annotation
        if isinstance(annotation, type) and not isinstance(annotation, GenericAlias):
            module = annotation.__module__
            text = annotation.__qualname__
            text = text if module == "builtins" else f"{module}.{text}"
        elif getattr(annotation, "__module__", None) == "typing":
            text = repr(annotation).replace("typing.", "")
        else:
            text = repr(annotation)
        if field.factory is not MISSING:
            text += " = <factory>"
        elif field.default is not MISSING:
            text += f" = {field.default!r}"
        parts.append(f"{field.name}: {text}")
    return f"({', '.join(parts)})"


@dataclass_transform(frozen_default=True, field_specifiers=(_field,))
def frozen(cls: type[_T]) -> type[_T]:
    """Rebuild ``cls`` as a frozen, slotted record of its annotated fields.

    Fields are the class's annotations (``ClassVar`` excluded), after those of record
    base classes; a class attribute or ``dataclasses.field(default=..., default_factory=
    ...)`` gives a default.  Methods the class defines itself are kept.
    """
    cls_dict = cls.__dict__
    if "__record_fields__" in cls_dict:
        return cls
    for name in ("__slots__", "__setattr__", "__delattr__"):
        if name in cls_dict:
            raise TypeError(f"{cls.__name__} may not define {name}: it is a frozen record")
    fields, slots = _fields(cls)
    names = tuple([f.name for f in fields])

    ns = dict(cls_dict)
    ns.pop("__dict__", None)
    ns.pop("__weakref__", None)
    for name in names:
        ns.pop(name, None)  # defaults live in __init__; the slot takes the name
    ns.update(__slots__=slots, __record_fields__=fields, __record_names__=names,
              __setattr__=_record_setattr, __delattr__=_record_delattr,
              __record_key__=attrgetter(*names) if names else _NO_FIELDS_KEY)  # fmt: skip
    ns.setdefault("__match_args__", names)
    for name, func in _SHARED.items():
        ns.setdefault(name, func)
    if "__hash__" not in cls_dict or (cls_dict["__hash__"] is None and "__eq__" in cls_dict):
        ns["__hash__"] = _record_hash  # as dataclasses: unless the class wrote its own
    cells = [CellType() for _ in names]
    init, generic = _init(cls, fields, names, cells)  # also checks the order of defaults
    if "__init__" not in cls_dict:
        ns["__init__"] = init
        if generic:  # (*args, **kwargs): tell inspect the real parameters
            ns.setdefault("__signature__", _Signature())
    if ns.get("__doc__") is None:  # as dataclasses: the signature
        ns["__doc__"] = cls.__name__ + _signature_text(fields)

    meta: Any = type(cls)
    new: type[_T] = meta(cls.__name__, cls.__bases__, ns)
    for cell, name in zip(cells, names, strict=True):
        cell.cell_contents = getattr(new, name).__set__  # the slot's descriptor, maybe a base's
    return new
