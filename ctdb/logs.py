"""Logging as CTDB does it: its level names and ``[logging] location``.

CTDB's levels are ERROR, WARNING, NOTICE, INFO and DEBUG; Python lacks NOTICE, so it
is added between INFO and WARNING.  Locations: ``file:PATH`` (append), ``syslog``
(with CTDB's optional ``:nonblocking``/``:udp``/``:udp-rfc5424`` suffixes, all sent to
the local syslog socket here) and ``stderr`` (what ``--foreground`` uses under systemd).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time

from ctdb.config.values import parse_log_level
from ctdb.errors import ConfigError

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

LEVELS = {
    "ERROR": logging.ERROR,
    "ERR": logging.ERROR,
    "WARNING": logging.WARNING,
    "WARN": logging.WARNING,
    "NOTICE": NOTICE,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
}


def level_number(name: str) -> int:
    """Python's level for a CTDB level: a name, a prefix of one, or a number 0-10."""
    try:
        return LEVELS[parse_log_level(name.strip())]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def level_name(number: int) -> str:
    name = logging.getLevelName(number)
    return name if isinstance(name, str) and name in LEVELS else "NOTICE"


class _Formatter(logging.Formatter):
    """CTDB's log line: ``YYYY/MM/DD HH:MM:SS.uuuuuu prog[pid]: message``."""

    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        t = record.created
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(t))
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        return f"{stamp}.{int((t % 1) * 1e6):06d} {self.prog}[{os.getpid()}]: {msg}"


def setup(location: str, level: str, prog: str) -> None:
    """Configure the root logger for a daemon process."""
    handler: logging.Handler
    if location.startswith("file:"):
        path = location[5:] or "/var/log/log.ctdb"
        handler = logging.FileHandler(path)
        handler.setFormatter(_Formatter(prog))
    elif location.split(":", 1)[0] == "syslog":
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.setFormatter(logging.Formatter(f"{prog}[%(process)d]: %(message)s"))
    elif location == "stderr":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter(prog))
    else:
        raise ConfigError(f"unknown log location {location!r}")
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level_number(level))
