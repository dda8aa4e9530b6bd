"""Event scripts on disk, in CTDB's layout: ``<CTDB_BASE>/events/<component>/``.

A script is a file named ``NN.name.script`` (two digits, a dot, a name, ``.script``),
known by ``NN.name``; scripts run in the order of their names; a script is enabled
when it is executable (a symlink counts by its target).  Enabling a script that is
not there yet links it in from the data directory's ``events/<component>/``, where a
package keeps the scripts it ships (pyctdb's ``/usr/share/pyctdb/events/legacy``,
Samba's ``/usr/share/ctdb/events/legacy``, chosen by ``CTDB_SCRIPTS_DATA_DIR``);
disabling a link into the data directory removes the link, disabling any other
script clears its execute bits.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ctdb.errors import CtdbError

SUFFIX = ".script"
PATTERN = "[0-9][0-9].*" + SUFFIX
EXEC_BITS = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


@dataclass(frozen=True, slots=True)
class Script:
    name: str  # "10.interface"
    path: Path
    enabled: bool


def script_name(file_name: str) -> str | None:
    """``NN.name`` for a script file name, None for anything else in the directory."""
    if not fnmatch.fnmatchcase(file_name, PATTERN):
        return None
    return file_name[: -len(SUFFIX)]


def _enabled(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IXUSR)
    except OSError:
        return False  # a dangling link, or gone meanwhile


def list_scripts(directory: Path) -> list[Script]:
    """The scripts of a component, in run order; [] when the directory is missing."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CtdbError(f"cannot read {directory}: {exc.strerror}") from None
    scripts = []
    for file_name in sorted(names):
        name = script_name(file_name)
        if name is not None:
            path = directory / file_name
            scripts.append(Script(name, path, _enabled(path)))
    return scripts


class ScriptError(CtdbError):
    """A script command failed; ``code`` is the exit code CTDB's tool gives."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _file_name(name: str) -> str:
    base = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    if "/" in base or script_name(base + SUFFIX) is None:
        raise ScriptError(f"Script {name} is invalid", errno.EINVAL)
    return base + SUFFIX


def set_enabled(directory: Path, data_dir: Path, name: str, enabled: bool) -> None:
    """``ctdb event script enable|disable COMPONENT SCRIPT``, as CTDB's tool does it.

    Enable: a link is left alone; a file gets its execute bits; a script only in the
    data directory is linked in.  Disable: a link is removed; a file loses its execute
    bits; a script that is not there is already disabled.
    """
    file_name = _file_name(name)
    path = directory / file_name
    if path.is_symlink():
        if not enabled:
            path.unlink()
        return
    if not os.path.lexists(path):
        if not enabled:
            return
        shipped = Path(os.path.realpath(data_dir / file_name))
        if not shipped.is_file():
            raise ScriptError(f"Script {name} does not exist in {directory.name}", errno.ENOENT)
        try:
            path.symlink_to(shipped)
        except OSError as exc:
            raise ScriptError(f"Failed to create symlink {path}: {exc.strerror}",
                              errno.EIO) from None
        return
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise ScriptError(f"Script {path} is not a file or a link", errno.EINVAL)
    path.chmod((mode | EXEC_BITS) if enabled else (mode & ~EXEC_BITS))


def script_list(directory: Path, data_dir: Path) -> list[tuple[bool, str]]:
    """``ctdb event script list``: (marked, name) rows; a row with an empty name is the
    blank line between the two parts.

    First every script the data directory ships, marked when it is linked in; then the
    component's other scripts (its own, or links elsewhere), marked when enabled.
    """
    shipped_dir = Path(os.path.realpath(data_dir))
    shipped = list_scripts(shipped_dir) if shipped_dir.is_dir() else []
    here = list_scripts(directory)
    linked: set[str] = set()
    rows: list[tuple[bool, str]] = []
    for script in shipped:
        path = directory / (script.name + SUFFIX)
        is_link = path.is_symlink() and os.readlink(path) == str(shipped_dir / path.name)
        if is_link:
            linked.add(script.name)
        rows.append((is_link, script.name))
    rest = [(s.enabled, s.name) for s in here if s.name not in linked]
    if rows and rest:
        rows.append((False, ""))
    return rows + rest
