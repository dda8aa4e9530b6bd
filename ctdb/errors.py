"""The project's one exception root.

Every error a user can see derives from :class:`CtdbError`; subclasses also inherit
the matching builtin so callers can catch either.  ``str(err)`` is one clear line.
"""


class CtdbError(Exception):
    """Root of every pyctdb error."""


class ConfigError(CtdbError, ValueError):
    """A configuration file or value is invalid; the message names file and line."""


class ProtocolError(CtdbError, ValueError):
    """Bytes that are not a valid protocol message."""


class TransportError(CtdbError, OSError):
    """A message could not be delivered."""


class RemoteError(CtdbError):
    """The peer answered a request with an error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class RequestTimeout(CtdbError, TimeoutError):
    """No reply arrived before the request's deadline."""


class FatalError(CtdbError):
    """The node must not run (an init or setup event failed): ctdbd stops, exit 1."""


# The exit code a daemon child uses to say "stop the node" rather than "restart me".
EXIT_FATAL = 78  # EX_CONFIG
