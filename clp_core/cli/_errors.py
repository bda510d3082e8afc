"""What ``clp`` prints when a command fails: one or two lines, never a traceback (``--debug``
shows it). Every mapping of an exception to a message and an exit code is here."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

from ..errors import (
    ClpError,
    ConfigError,
    CorruptStateError,
    HistoryError,
    HookError,
    PluginError,
    StorageError,
)

EXIT_FAILURE = 1
EXIT_USAGE = 2  # click's code for a bad command line
DEBUG_HINT = "run with --debug for the traceback"
NETWORK_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT}


class CliError(ClpError):
    """A failure the command line found itself; ``hint`` says what to do about it."""

    def __init__(self, message: str, hint: str = "", *, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.hint = hint
        self.exit_code = exit_code


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _unreachable(exc: BaseException) -> BaseException | None:
    """The connection failure behind ``exc``, if that is what it is."""
    for link in _chain(exc):
        name = type(link).__name__
        if isinstance(link, (ConnectionError, TimeoutError)) or "Connection" in name or "Timeout" in name:
            return link
        if isinstance(link, socket.gaierror) or (isinstance(link, OSError) and link.errno in NETWORK_ERRNOS):
            return link
    return None


def describe(exc: BaseException) -> tuple[str, str, int]:
    """``(message, hint, exit_code)`` for a failure of a command."""
    if isinstance(exc, CliError):
        return str(exc), exc.hint, exc.exit_code
    down = _unreachable(exc)
    if down is not None:
        backend = f" ({exc.backend})" if isinstance(exc, StorageError) else ""
        return (f"cannot reach the server{backend}: {type(down).__name__}: {down}",
                "check that it is running and that the URL's host and port are right", EXIT_FAILURE)
    if isinstance(exc, CorruptStateError):
        return (f"stored data cannot be read: {exc}",
                "the data is damaged or was written by a newer clp-core; restore it from a backup", EXIT_FAILURE)
    if isinstance(exc, StorageError) and (" no such database: " in str(exc) or " no table " in str(exc)):
        return str(exc), "check the URL and the key; clp reads stores and never creates them", EXIT_FAILURE
    if isinstance(exc, StorageError):
        return f"storage failed: {exc}", "check the URL and that the store is what clp wrote", EXIT_FAILURE
    if isinstance(exc, HistoryError):
        return str(exc), "`clp history URL KEY` lists the events there are", EXIT_FAILURE
    if isinstance(exc, (PluginError, HookError)):
        return str(exc), "`clp plugins` shows the installed plugins; CLP_DISABLE_PLUGINS=NAME turns one off", \
            EXIT_FAILURE
    if isinstance(exc, ConfigError):
        return f"bad configuration: {exc}", "check [tool.clp] in pyproject.toml, clp.toml and CLP_* variables", \
            EXIT_FAILURE
    if isinstance(exc, ClpError):
        return f"{type(exc).__name__}: {exc}", DEBUG_HINT, EXIT_FAILURE
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename or exc}", "check the path", EXIT_FAILURE
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}", "check the file's permissions", EXIT_FAILURE
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "", 130
    return f"unexpected error: {type(exc).__name__}: {exc}", f"this is a bug in clp or a plugin; {DEBUG_HINT}", \
        EXIT_FAILURE


def report(exc: BaseException) -> int:
    """Print ``exc`` as ``clp: error: ...`` (and a hint) on stderr; return the exit code."""
    import sys

    message, hint, code = describe(exc)
    print(f"clp: error: {message}", file=sys.stderr)
    if hint:
        print(f"  {hint}", file=sys.stderr)
    return code


__all__ = ["CliError", "EXIT_FAILURE", "EXIT_USAGE", "describe", "report"]
