"""CTDB's ini-style line reader (Samba's "tini"), used for ctdb.conf and ctdb.tunables.

Python's configparser differs from it in comments, continuations, case and
whitespace, so this follows CTDB's rules instead:

* leading whitespace is skipped; a line whose first other character is ``#`` or ``;``
  is a comment (only then: ``key = value # x`` has the value ``value # x``);
* a line ending in a backslash (optionally followed by one blank) continues on
  the next physical line;
* each run of whitespace counts as its first character, so ``log   level`` is
  ``log level``; one blank each side of the name and of the value is dropped;
* ``[name]`` starts a section: the name is the text up to the first ``]`` and
  anything after it is ignored;
* anything else is ``name = value`` split at the first ``=``.

Where CTDB would stop reading silently (no ``]``, an empty name, a line with no
``=`` in ctdb.conf) we refuse the file instead.
"""

from __future__ import annotations

from ctdb.config.values import config_error
from ctdb.record import frozen

TYPE_CHECKING = False  # typing is not imported at run time (the ctdb CLI's start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator

_SPACE = " \t\n\v\f\r"  # C isspace() in the C locale


@frozen
class Section:
    """A ``[name]`` header, exactly as written between the brackets."""

    name: str
    line: int


@frozen
class Param:
    """A ``name = value`` line; ``value`` is None when the line had no ``=``."""

    name: str
    value: str | None
    line: int


def _logical_lines(text: str, filename: str) -> Iterator[tuple[int, str]]:
    """(first physical line number, content) for each non-blank, non-comment line."""
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise config_error(filename, line, "NUL character in file")
    physical = text.split("\n")
    i = 0
    while i < len(physical):
        start = i
        raw = physical[i]
        i += 1
        stripped = raw.lstrip(_SPACE)
        if not stripped or stripped[0] in "#;":
            continue
        buf: list[str] = []
        chunk = stripped
        while True:
            for c in chunk:
                if buf and c in _SPACE and buf[-1] in _SPACE:
                    continue  # a run of blanks counts as its first one
                buf.append(c)
            if i >= len(physical):
                break  # end of file ends the line, continuation or not
            if buf and buf[-1] == "\\":
                buf.pop()
            elif len(buf) > 1 and buf[-2] == "\\" and buf[-1] in _SPACE:
                del buf[-2:]
            else:
                break
            chunk = physical[i]
            i += 1
        yield start + 1, "".join(buf)


def _trim_one(text: str) -> str:
    """Drop one blank at each end (runs were already squeezed to one)."""
    if text[:1] and text[0] in _SPACE:
        text = text[1:]
    if text[-1:] and text[-1] in _SPACE:
        text = text[:-1]
    return text


def read_ini(text: str, filename: str) -> Iterator[Section | Param]:
    """Yield the sections and parameters of *text*, refusing malformed lines."""
    for line, content in _logical_lines(text, filename):
        if content.startswith("["):
            close = content.find("]")
            if close < 0:
                raise config_error(filename, line, f"section header {content!r} has no closing ']'")
            yield Section(content[1:close], line)
            continue
        name, equals, value = content.partition("=")
        name = _trim_one(name)
        if not name:
            raise config_error(filename, line, f"line {content!r} has no name before '='")
        yield Param(name, _trim_one(value) if equals else None, line)
