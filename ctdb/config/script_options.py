"""script.options: event script settings as shell variable assignments.

CTDB's event scripts source this file with the shell, so anything the shell runs
would be "accepted".  We accept only what ctdb-script.options(5) describes,
"simple shell-style variable assignments and shell-style comments", and read it
the way the shell would:

* blank lines and lines starting with ``#`` (after blanks) are ignored;
* each other line is ``NAME=VALUE`` with nothing before NAME, optionally followed by
  blanks and a ``# comment``;
* VALUE is one shell word: unquoted text, ``'single quoted'``, ``"double quoted"``
  (with ``\\$ \\` \\" \\\\`` escapes) and backslash escapes, joined;
* ``$NAME`` and ``${NAME}`` expand to a variable assigned earlier in the file or
  given in *env* (the loader passes CTDB_BASE); other expansions (``$(...)``,
  backquotes, ``${X:-y}``, unset variables) and command syntax are refused, since
  they cannot be checked without running the shell.

Quotes must close on the same line: multi-line values are refused.
"""

from __future__ import annotations

import re

from ctdb.config.values import config_error, read_text

TYPE_CHECKING = False  # typing is not imported at run time (the ctdb CLI's start-up)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

# Patterns stay strings: ``re`` compiles (and caches) them on first use, not on import.
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ASSIGNMENT = r"([A-Za-z_][A-Za-z0-9_]*)="
_BLANK = " \t"
_SHELL_SPECIAL = ";&|<>()`"


class _Word:
    """Reads one shell word from *line* starting at *pos*, expanding simple $NAME."""

    def __init__(self, line: str, pos: int, known: Mapping[str, str]) -> None:
        self.line = line
        self.pos = pos
        self.known = known
        self.out: list[str] = []

    def read(self) -> str:
        line = self.line
        while self.pos < len(line):
            c = line[self.pos]
            if c in _BLANK:
                break
            if c == "'":
                self._single_quoted()
            elif c == '"':
                self._double_quoted()
            elif c == "\\":
                if self.pos + 1 >= len(line):
                    raise ValueError("a line continuation (trailing backslash) is not supported")
                self.out.append(line[self.pos + 1])
                self.pos += 2
            elif c == "$":
                self._dollar(quoted=False)
            elif c in _SHELL_SPECIAL:
                raise ValueError(f"shell syntax {c!r} is not allowed (quote the value)")
            else:
                self.out.append(c)
                self.pos += 1
        return "".join(self.out)

    def _single_quoted(self) -> None:
        end = self.line.find("'", self.pos + 1)
        if end < 0:
            raise ValueError("unterminated single quote")
        self.out.append(self.line[self.pos + 1 : end])
        self.pos = end + 1

    def _double_quoted(self) -> None:
        line = self.line
        self.pos += 1
        while self.pos < len(line):
            c = line[self.pos]
            if c == '"':
                self.pos += 1
                return
            if c == "\\" and self.pos + 1 < len(line) and line[self.pos + 1] in '$`"\\':
                self.out.append(line[self.pos + 1])
                self.pos += 2
            elif c == "$":
                self._dollar(quoted=True)
            elif c == "`":
                raise ValueError("command substitution is not allowed")
            else:
                self.out.append(c)
                self.pos += 1
        raise ValueError("unterminated double quote")

    def _dollar(self, *, quoted: bool) -> None:
        rest = self.line[self.pos + 1 :]
        m = re.match(_NAME, rest)
        if m:
            self.out.append(self._lookup(m.group(0)))
            self.pos += 1 + m.end()
            return
        if rest.startswith("{"):
            m = re.match(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", rest)
            if m is None:
                raise ValueError("only ${NAME} expansions are allowed")
            self.out.append(self._lookup(m.group(1)))
            self.pos += 1 + m.end()
            return
        if not rest or rest[0] in _BLANK or (quoted and rest[0] == '"'):
            self.out.append("$")  # a lone dollar sign is literal
            self.pos += 1
            return
        if rest.startswith("("):
            raise ValueError("command substitution is not allowed")
        raise ValueError(f"shell expansion ${rest[0]} is not allowed")

    def _lookup(self, name: str) -> str:
        if name not in self.known:
            raise ValueError(f"${name} is not set earlier in the file")
        return self.known[name]


def parse_script_options(
    text: str, filename: str = "script.options", *, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables *text* assigns, in order; ConfigError on any other line."""
    if "\0" in text:
        raise config_error(filename, text[: text.index("\0")].count("\n") + 1, "NUL character")
    result: dict[str, str] = {}
    known: dict[str, str] = dict(env or {})
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.lstrip(_BLANK)
        if not line or line.startswith("#"):
            continue
        if "\r" in line:
            raise config_error(
                filename, number, "carriage return (DOS line ending): the shell keeps it in values"
            )
        m = re.match(_ASSIGNMENT, line)
        if m is None:
            raise config_error(filename, number, f"expected NAME=value, got {_preview(line)!r}")
        name = m.group(1)
        word = _Word(line, m.end(), known)
        try:
            value = word.read()
        except ValueError as e:
            raise config_error(filename, number, f"{name}: {e}") from None
        rest = line[word.pos :].lstrip(_BLANK)
        if rest and not rest.startswith("#"):
            raise config_error(
                filename,
                number,
                f"{name}: unexpected {_preview(rest)!r} after the value "
                "(one assignment per line; quote values with spaces)",
            )
        result[name] = value
        known[name] = value
    return result


def _preview(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def load_script_options(path: Path, *, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Read a script.options file; OSError (e.g. FileNotFoundError) propagates."""
    return parse_script_options(read_text(path), str(path), env=env)
